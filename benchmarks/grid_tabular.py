"""Headless speed and learning of the tabular grid-world chapters (Monte Carlo, SARSA, Q-learning).

For every agent and seed: train 1000 episodes headless exactly as `python <script> --no-render --seed S`
does, and report the wall time, the number of environment steps, the time per step and where the greedy
path of the learned table leads.

    python benchmarks/grid_tabular.py                    # seeds 100..109 (held out from the tests' seeds)
    python benchmarks/grid_tabular.py --seeds 0 1 2 --episodes 1000
"""
import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
AGENTS = {   # name: (script, agent class, the trained agent's greedy action in a state, as the script walks it)
    "monte carlo": ("1-grid-world/3-monte-carlo/mc_agent.py", "MCAgent",
                    lambda agent: lambda state: int(np.argmax(agent.possible_next_state(state)))),
    "sarsa": ("1-grid-world/4-sarsa/sarsa_agent.py", "SARSAgent",
              lambda agent: lambda state: int(np.argmax(agent.q_table[state[1], state[0]]))),
    "q-learning": ("1-grid-world/5-q-learning/q_learning_agent.py", "QLearningAgent",
                   lambda agent: lambda state: int(np.argmax(agent.q_table[state[1], state[0]]))),
}


sys.path.insert(0, str(ROOT / "tests"))
from conftest import load_module as load  # noqa: E402  (the tests' loader: chapter file by path)


def run(module, world, agent_class, seed, episodes):
    random.seed(seed)                       # the scripts' seeding block
    np.random.seed(seed)
    env = world.Env()
    agent = getattr(module, agent_class)(actions=list(range(env.n_actions)))
    steps = 0
    step = env.step

    def counted_step(action):
        nonlocal steps
        steps += 1
        return step(action)

    env.step = counted_step
    start = time.perf_counter()
    module.train(env, agent, episodes, quiet=True)
    return time.perf_counter() - start, steps, env, agent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(100, 110)))
    parser.add_argument("--episodes", type=int, default=1000)
    args = parser.parse_args()
    print(f"{args.episodes} headless episodes per run, seeds {args.seeds}")
    for name, (script, agent_class, greedy_action) in AGENTS.items():
        module = load(script)
        world = load(str(Path(script).with_name("environment.py")))     # the world, and its greedy_path
        times, all_steps, lengths = [], [], []
        for seed in args.seeds:
            seconds, steps, env, agent = run(module, world, agent_class, seed, args.episodes)
            path, ending = world.greedy_path(env, greedy_action(agent))
            times.append(seconds)
            all_steps.append(steps)
            lengths.append(len(path) - 1 if ending.startswith("reaches the circle") else None)
            print(f"  {name:12s} seed {seed:4d}: {seconds:6.2f} s, {steps:7d} steps, "
                  f"{1e6 * seconds / steps:5.1f} us/step, greedy path {ending}")
        safe = sum(length is not None for length in lengths)
        optimal = sum(length == 6 for length in lengths)
        print(f"{name:12s}: wall time median {np.median(times):.2f} s (min {min(times):.2f}, "
              f"max {max(times):.2f}), {np.median(all_steps):.0f} steps median; greedy path reaches the "
              f"circle in {safe} of {len(args.seeds)} seeds, in the shortest 6 moves in {optimal}")


if __name__ == "__main__":
    main()
