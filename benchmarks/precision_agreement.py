"""Do the shipped Breakout agents choose the same actions in bfloat16 as in float32?

    python benchmarks/precision_agreement.py                          # this machine's bfloat16 (oneDNN where it has it)
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/precision_agreement.py  # TensorFlow's own (emulated) bfloat16 kernels

Records --states histories that the float32 agent meets while playing (5 % random actions so that it does not
replay one game), then compares the greedy action of the same weights in both precisions on every one of them:
the share that agrees, the largest change of a Q-value (DQN) or probability (A3C), and, where they disagree, how
close the two best float32 choices were. The test suite holds the same comparison on fewer states.
"""
import argparse
import os

import numpy as np

from common import load_module  # noqa: E402  (benchmarks/common.py)


def dqn_states(dqn, agent, count, rng):
    env = dqn.make_env()
    observe, lives = dqn.start_game(env, seed=0)
    history, dead, states = dqn.new_history(dqn.pre_processing(observe)), False, []
    while len(states) < count:
        states.append(history)
        action = dqn.FIRE if dead else (agent.get_action(history)[0] if rng.random() > 0.05 else rng.integers(3))
        observe, _, terminated, truncated, info = env.step(dqn.ALE_ACTION[action])
        frame, dead, lives = dqn.pre_processing(observe), info["lives"] < lives, info["lives"]
        history = dqn.new_history(frame) if dead else dqn.next_history_of(history, frame)
        if terminated or truncated:
            observe, lives = dqn.start_game(env)
            history, dead = dqn.new_history(dqn.pre_processing(observe)), False
    env.close()
    return np.stack(states)


def a3c_states(a3c, model, count, rng):
    games, states = a3c.VectorBreakout(1, seed=0), []
    observation = games.reset()
    while len(states) < count:
        states.append(observation[0])
        policy = model(observation, training=False)[0].numpy()
        observation = games.step(policy.argmax(axis=1) if rng.random() > 0.05 else rng.integers(0, 3, 1))[0]
    games.close()
    return np.stack(states)


def compare(name, outputs32, outputs16):
    differ = outputs32.argmax(axis=1) != outputs16.argmax(axis=1)
    best_two = np.sort(outputs32, axis=1)[:, -2:]
    gaps = best_two[differ, 1] - best_two[differ, 0]
    print(f"  {name}: {100 * (1 - differ.mean()):.2f} % of {len(differ)} states agree; largest change "
          f"{np.abs(outputs32 - outputs16).max():.4f}; float32 gap of the two best where they differ: "
          f"{gaps.max() if len(gaps) else 0:.4f} at most")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--states", type=int, default=2000)
    args = parser.parse_args()
    print(f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(default)')}")
    rng = np.random.default_rng(0)
    dqn = load_module("3-atari/1-breakout-dqn/breakout_dqn.py")
    agents = {p: dqn.DQNAgent(memory_size=1, precision=p) for p in ("float32", "bfloat16")}
    for agent in agents.values():
        agent.model.load_weights(dqn.TRAINED)
    agents["float32"].epsilon = 0.0
    states = dqn.to_network_input(dqn_states(dqn, agents["float32"], args.states, rng))
    compare("Breakout DQN", *(agents[p].model(states).numpy() for p in ("float32", "bfloat16")))
    a3c = load_module("3-atari/2-breakout-a3c/breakout_a3c.py")
    models = {p: a3c.build_model(p) for p in ("float32", "bfloat16")}
    for model in models.values():
        model.load_weights(a3c.TRAINED)
    states = a3c_states(a3c, models["float32"], args.states, rng)
    compare("Breakout A3C", *(models[p](states, training=False)[0].numpy() for p in ("float32", "bfloat16")))


if __name__ == "__main__":
    main()
