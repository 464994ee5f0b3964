"""Headless speed of the moving-obstacle grid world chapters (Deep SARSA, REINFORCE).

Runs each chapter's own training loop (`train` from the script, with no TensorBoard writer, no saving and
no stop flag, output swallowed) for a fixed number of environment steps and prints environment steps per second, next to
the environment alone and to what one `model.predict` per step would cost.

    python benchmarks/grid_deep.py [--steps 20000] [--seed 0]
"""
import argparse
import contextlib
import io
import os
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, load_module as load  # noqa: E402  (chapter file by path; no pytest needed)

# Stands in for the script's StopFlag: never stops (check_finite passes the loss through, as StopFlag's does).
NEVER_STOP = types.SimpleNamespace(requested=False, diverged=None, check_finite=lambda value, what="the loss": value)


class CountingEnv:
    """Wraps an Env and counts the steps taken through it."""

    def __init__(self, env):
        self.env, self.steps = env, 0

    def step(self, action):
        self.steps += 1
        return self.env.step(action)

    def __getattr__(self, name):
        return getattr(self.env, name)


def time_training(module, world, agent_class, steps, seed):
    """Steps/s of the chapter's training loop, run episode by episode until `steps` steps are done."""
    import keras
    import tensorflow as tf
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    env = CountingEnv(world.Env())
    agent = agent_class(env.state_size, env.action_size)
    writer = tf.summary.create_noop_writer()
    with contextlib.redirect_stdout(io.StringIO()):
        module.train(env, agent, 1, [], writer, lambda scores: None, NEVER_STOP)          # warm-up: compiles
        env.steps = 0
        start = time.perf_counter()
        while env.steps < steps:
            module.train(env, agent, 1, [], writer, lambda scores: None, NEVER_STOP)
        elapsed = time.perf_counter() - start
    return env.steps / elapsed, env.steps


def time_environment(world, steps, seed):
    rng = np.random.default_rng(seed)
    env = world.Env()
    actions = rng.integers(env.action_size, size=steps)
    env.reset()
    start = time.perf_counter()
    for action in actions:
        _, _, done = env.step(action)
        if done or env.truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def time_calls(call, repeats):
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000, help="environment steps per measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    deep_sarsa = load("1-grid-world/6-deep-sarsa/deep_sarsa_agent.py")
    reinforce = load("1-grid-world/7-reinforce/reinforce_agent.py")
    deep_sarsa_world = load("1-grid-world/6-deep-sarsa/environment.py")      # the world lives beside the agent
    reinforce_world = load("1-grid-world/7-reinforce/environment.py")
    import tensorflow as tf

    print(f"machine: {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}, {load_average()}")
    rate = time_environment(deep_sarsa_world, args.steps, args.seed)
    print(f"environment alone (random actions):        {rate:9.0f} steps/s")
    rate, steps = time_training(deep_sarsa, deep_sarsa_world, deep_sarsa.DeepSARSAgent, args.steps, args.seed)
    print(f"Deep SARSA training (act + update / step): {rate:9.0f} steps/s  ({steps} steps)")
    rate, steps = time_training(reinforce, reinforce_world, reinforce.ReinforceAgent, args.steps, args.seed)
    print(f"REINFORCE training (update / episode):     {rate:9.0f} steps/s  ({steps} steps)")

    agent = deep_sarsa.DeepSARSAgent(15, 5)
    state = deep_sarsa_world.Env().reset()
    compiled = tf.function(lambda x: agent.model(x, training=False))
    tensor = tf.constant(state[None])
    print("one action's Q-values, for comparison:")
    numpy_ms = time_calls(lambda: agent.q_values(state), 2000)
    compiled_ms = time_calls(lambda: compiled(tensor), 500)
    predict_ms = time_calls(lambda: agent.model.predict(state[None], verbose=0), 20)
    print(f"  numpy on the weights (what the scripts do): {numpy_ms:8.4f} ms")
    print(f"  compiled Keras call (tf.function):          {compiled_ms:8.4f} ms")
    print(f"  model.predict (the book's way):             {predict_ms:8.4f} ms")
    print(load_average())


if __name__ == "__main__":
    main()
