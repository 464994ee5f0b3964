"""Speed and memory of the Breakout DQN (3-atari/1-breakout-dqn/breakout_dqn.py).

    python benchmarks/breakout_dqn.py                   # 2000 agent steps per phase, seed 0
    python benchmarks/breakout_dqn.py --steps 5000 --skip-memory
    python benchmarks/breakout_dqn.py --precisions float32 bfloat16 --skip-memory   # phases 2-3 in each precision

1. env only: ALE Breakout steps/s with random actions (no preprocessing, no agent), the ceiling.
2. before training: the training loop's agent steps/s while the replay memory fills (random actions,
   preprocessing, memory writes; the network is not called, as in the real warm-up).
3. training: the same loop once training runs (epsilon 0.1, so ~90 % of steps ask the network for an
   action; one minibatch of 32 every --train-freq steps), with a timer around each piece: env,
   preprocessing, acting (the compiled forward pass), replay sampling, training (the compiled gradient
   step) and the rest (memory writes, histories, Python glue). Target: everything that is not the
   network's own forward/backward maths <= 25 % of the wall time.
   With several --precisions, phases 2 and 3 run once per precision (the network's maths in float32 or
   bfloat16, the chapter's --precision), one after the other in this process, and a table compares them.
4. peak memory: a fresh process fills a full 400,000-frame replay memory with real frames, trains and
   acts a little, and reports its peak resident size (ru_maxrss). Target <= 3.5 GB.

What runs is the chapter's own training loop (breakout_dqn.train) with timers wrapped around the
functions and DQNAgent methods it calls; this file copies no part of the loop. The machine's load is
printed before and after: on a shared machine, timings are only as good as that.
"""
import argparse
import contextlib
import io
import os
import random
import resource
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402  (after the backend is chosen)

from common import load_average, load_module  # noqa: E402  (benchmarks/common.py)


def load_dqn():
    return load_module("3-atari/1-breakout-dqn/breakout_dqn.py")


def load_world():
    """The chapter's environment.py: make_env, start_game, pre_processing, new_history."""
    return load_module("3-atari/1-breakout-dqn/environment.py")


def env_only(steps, seed):
    env = load_world().make_env()
    env.reset(seed=seed)
    env.action_space.seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


class Timers:
    """Seconds per named piece of the loop. wrap() puts a timer around one of the chapter's own functions."""

    def __init__(self):
        self.seconds = {}

    def add(self, name, start):
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - start
        return now

    def wrap(self, name, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(name, start)
        return timed


REST = "rest (memory writes, histories, glue)"


def run_loop(dqn, agent, env, steps, train_freq, timers, seed=None):
    """`steps` agent steps of the chapter's own training loop (dqn.train, not a copy of it), a new game
    first, with a timer around each of the pieces it calls: env.step, pre_processing, get_action (the
    compiled forward pass on greedy steps), the replay memory's sample, train_step (the compiled gradient
    step) and update_target_model; the rest of the wall time is the loop's own Python (memory writes,
    histories, printing). Its per-game lines are swallowed. Returns (wall seconds, CPU seconds)."""
    pieces = [(agent, "get_action", "acting (network forward)"),
              (agent.memory, "sample", "replay sampling"),
              (agent, "train_step", "training (network forward+backward)"),
              (agent, "update_target_model", "target copy (update_target_model)"),
              (env, "step", "env")]
    for owner, attribute, name in pieces:            # instance attributes shadow the methods until deleted
        setattr(owner, attribute, timers.wrap(name, getattr(owner, attribute)))
    # environment.py's function, as breakout_dqn imported it: the loop looks up that name at each call
    pre_processing = dqn.pre_processing
    dqn.pre_processing = timers.wrap("preprocessing", pre_processing)
    timed_before = sum(timers.seconds.values())
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            dqn.train(agent, env, max_steps=agent.global_step + steps, train_freq=train_freq, seed=seed)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        dqn.pre_processing = pre_processing
        for owner, attribute, _ in pieces:
            delattr(owner, attribute)
    timers.seconds[REST] = timers.seconds.get(REST, 0.0) + wall - (sum(timers.seconds.values()) - timed_before)
    return wall, cpu


def throughput(dqn, steps, train_freq, seed, precision="float32"):
    """Phases 2 and 3 in one precision; returns the training phase's agent steps/s and its timers."""
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    env = load_world().make_env()
    agent = dqn.DQNAgent(memory_size=max(4 * steps, 10_000), train_start=10 * steps, precision=precision)
    agent.epsilon = 1.0
    before = Timers()
    wall, cpu = run_loop(dqn, agent, env, steps, train_freq, before, seed=seed)
    print(f"  before training: {steps / wall:8.0f} agent steps/s   ({1000 * cpu / steps:.2f} CPU ms/step)")

    agent.epsilon, agent.train_start = 0.1, 1
    warm = Timers()                                    # compile the act and train functions first
    run_loop(dqn, agent, env, 50, train_freq, warm)
    timers = Timers()
    wall, cpu = run_loop(dqn, agent, env, steps, train_freq, timers)
    print(f"  training:        {steps / wall:8.0f} agent steps/s   ({1000 * cpu / steps:.2f} CPU ms/step,"
          f" one minibatch every {train_freq} steps, epsilon 0.1)")
    total = sum(timers.seconds.values())
    print(f"\n  where a training agent step's time goes ({1000 * total / steps:.2f} ms per step):")
    for name, seconds in sorted(timers.seconds.items(), key=lambda item: -item[1]):
        print(f"    {name:40s} {1000 * seconds / steps:7.3f} ms  {100 * seconds / total:5.1f} %")
    network = sum(timers.seconds[k] for k in timers.seconds if "network" in k)
    print(f"  not the network's maths: {100 * (total - network) / total:.1f} % of the wall time (target <= 25 %)")
    env.close()
    return steps / wall, timers


def compare_precisions(results, steps):
    """One table: agent steps/s while training and the network's two pieces, per precision."""
    base = results[0][1]
    print("\n  | precision | agent steps/s while training | vs float32 | training ms/step | acting ms/step |")
    print("  |---|---:|---:|---:|---:|")
    for precision, rate, timers in results:
        train_ms = 1000 * timers.seconds.get("training (network forward+backward)", 0.0) / steps
        act_ms = 1000 * timers.seconds.get("acting (network forward)", 0.0) / steps
        print(f"  | {precision} | {rate:.0f} | {rate / base:.2f}x | {train_ms:.2f} | {act_ms:.2f} |")


def peak_memory(memory_size, train_steps):
    """Runs in a fresh process: fill the replay memory with real frames, train, act; print ru_maxrss."""
    dqn, world = load_dqn(), load_world()
    random.seed(0)
    np.random.seed(0)
    env = world.make_env()
    frames, (observe, _) = [], world.start_game(env, dqn.NO_OP_STEPS, seed=0)
    while len(frames) < 2000:                          # 2000 real screens, reused round-robin
        observe, _, terminated, truncated, _ = env.step(random.randrange(4))
        frames.append(world.pre_processing(observe))
        if terminated or truncated:
            env.reset()
    agent = dqn.DQNAgent(memory_size=memory_size, train_start=1)
    start = time.perf_counter()
    agent.memory.start_history(frames[0])
    for i in range(1, memory_size + 10):               # a little past full: the ring has wrapped
        agent.append_sample(i % 3, 0.0, frames[i % len(frames)], i % 200 == 0)
    fill = time.perf_counter() - start
    history = world.new_history(frames[0])
    for _ in range(train_steps):
        agent.train_model()
        agent.get_action(history)
    agent.update_target_model()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024       # Linux: KiB
    print(f"  replay memory {memory_size:,} frames ({agent.memory.frames.nbytes / 1e9:.2f} GB of frames,"
          f" filled in {fill:.1f} s), {train_steps} minibatches trained")
    print(f"  whole-process peak memory (ru_maxrss): {peak / 1e9:.2f} GB = {peak / 2**30:.2f} GiB"
          f" (target <= 3.5 GB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="agent steps per phase")
    parser.add_argument("--train-freq", type=int, default=4, help="as the script's --train-freq")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-size", type=int, default=400_000, help="frames for the peak-memory run")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the peak-memory run")
    parser.add_argument("--precisions", nargs="+", choices=("float32", "bfloat16"), default=["float32"],
                        help="run phases 2 and 3 in each of these (the chapter's --precision)")
    parser.add_argument("--peak-memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_memory_child:
        peak_memory(args.memory_size, train_steps=50)
        return

    print(f"Breakout DQN benchmark ({os.cpu_count()} CPUs, {load_average()})")
    dqn = load_dqn()
    print(f"  env only:        {env_only(args.steps, args.seed):8.0f} env steps/s (random actions)")
    results = []
    for precision in args.precisions:
        print(f"\n  precision {precision}:")
        rate, timers = throughput(dqn, args.steps, args.train_freq, args.seed, precision)
        results.append((precision, rate, timers))
    if len(results) > 1:
        compare_precisions(results, args.steps)
    if not args.skip_memory:
        print()
        child = subprocess.run([sys.executable, __file__, "--peak-memory-child",
                                "--memory-size", str(args.memory_size)], capture_output=True, text=True)
        print(child.stdout.rstrip() or child.stderr[-2000:])
    print(f"({load_average()})")


if __name__ == "__main__":
    main()
