"""Policy iteration on the 5x5 grid world (book: 1-grid-world/1-policy-iteration).

Dynamic programming with a known model. Two steps alternate:

  policy evaluation  (one synchronous sweep of the Bellman expectation equation)
      V(s) <- sum_a pi(a|s) * [ r(s, a) + gamma * V(s') ]
  policy improvement (greedy with respect to the current values; ties share the probability)
      pi(a|s) = 1 / |A*(s)| for a in A*(s) = argmax_a [ r(s, a) + gamma * V(s') ], else 0

With a display, the book's window opens: each click on Evaluate or Improve does ONE of these steps, "move"
walks the agent along the policy, "reset" starts over. Without one (or with --no-render), the script
alternates full evaluation and improvement until the policy is stable and prints the values and policy.

This chapter differs from the shared CLI: it has no episodes and saves nothing (the book's does not either).
"""
import argparse
import random
import sys
import tkinter as tk
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))              # import this chapter's own environment.py
from environment import Env, GraphicDisplay  # noqa: E402

DISCOUNT_FACTOR = 0.9
TIE_TOLERANCE = 1e-9                       # action values closer than this count as a tie


class PolicyIteration:
    def __init__(self, env):
        self.env = env
        self.discount_factor = DISCOUNT_FACTOR
        self.reset()

    # Start over: every value 0, the uniform random policy (the terminal cell has no policy).
    def reset(self):
        self.value_table = [[0.0] * self.env.width for _ in range(self.env.height)]
        self.policy_table = [[[0.25] * 4 for _ in range(self.env.width)]
                             for _ in range(self.env.height)]
        for row, col in self.env.get_all_states():
            if self.env.is_terminal([row, col]):
                self.policy_table[row][col] = []

    # One sweep of the Bellman expectation equation over all states, from a copy (synchronous).
    def policy_evaluation(self):
        next_value_table = [[0.0] * self.env.width for _ in range(self.env.height)]
        for state in self.env.get_all_states():
            if self.env.is_terminal(state):
                continue
            value = 0.0
            for action in self.env.possible_actions:
                value += self.get_policy(state)[action] * self.action_value(state, action)
            next_value_table[state[0]][state[1]] = value
        self.value_table = next_value_table

    # Make the policy greedy with respect to the current values; tied actions share probability.
    def policy_improvement(self):
        next_policy = [[list(probs) for probs in row] for row in self.policy_table]
        for state in self.env.get_all_states():
            if self.env.is_terminal(state):
                continue
            values = [self.action_value(state, action) for action in self.env.possible_actions]
            best = max(values)
            best_actions = [a for a, v in enumerate(values) if best - v <= TIE_TOLERANCE]
            next_policy[state[0]][state[1]] = [1.0 / len(best_actions) if a in best_actions else 0.0
                                               for a in self.env.possible_actions]
        self.policy_table = next_policy

    # r(s, a) + gamma * V(s'): the value of one action under the current value table.
    def action_value(self, state, action):
        next_state = self.env.state_after_action(state, action)
        reward = self.env.get_reward(state, action)
        return reward + self.discount_factor * self.get_value(next_state)

    # Sample an action from the policy (used by "move").
    def get_action(self, state):
        return random.choices(self.env.possible_actions, weights=self.get_policy(state))[0]

    def get_policy(self, state):
        return self.policy_table[state[0]][state[1]]

    def get_value(self, state):
        return self.value_table[state[0]][state[1]]


# ---- headless run: iterate to convergence and print (plumbing below is the same in every chapter) ----
ARROWS = "↑↓←→"


def solve(agent, theta=1e-10, max_rounds=100):
    """Full policy iteration: evaluate until values move less than theta, improve; stop when stable."""
    for round_number in range(1, max_rounds + 1):
        while True:
            before = np.array(agent.value_table)
            agent.policy_evaluation()
            if np.max(np.abs(np.array(agent.value_table) - before)) < theta:
                break
        before_policy = agent.policy_table
        agent.policy_improvement()
        if agent.policy_table == before_policy:
            return round_number
    return max_rounds


def format_values(value_table):
    return "\n".join(" ".join(f"{value:5.2f}" for value in row) for row in value_table)


def format_policy(env, best_actions_of):
    """One cell per column: the arrows of the best actions, G for the goal."""
    rows = []
    for row in range(env.height):
        cells = []
        for col in range(env.width):
            actions = best_actions_of([row, col])
            cells.append("G" if env.is_terminal([row, col]) else "".join(ARROWS[a] for a in actions))
        rows.append(" ".join(f"{cell:<4}" for cell in cells))
    return "\n".join(rows)


def display_available():
    try:
        tk.Tk().destroy()
        return True
    except tk.TclError:
        return False


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=None,
                        help="open the book's window (default: when a display is available)")
    parser.add_argument("--seed", type=int, default=None, help="seed for the sampled moves")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if sys.stdout.encoding and sys.stdout.encoding.lower() not in ("utf-8", "utf8"):
        sys.stdout.reconfigure(errors="replace")
    if args.seed is not None:
        random.seed(args.seed)
        np.random.seed(args.seed)

    render = args.render is not False
    if render and not display_available():
        print("no display found: running headless (the window needs a display)")
        render = False

    env = Env()
    policy_iteration = PolicyIteration(env)
    if render:
        GraphicDisplay(policy_iteration).mainloop()
    else:
        rounds = solve(policy_iteration)
        print(f"policy iteration converged after {rounds} improvements (gamma = {DISCOUNT_FACTOR})")
        print("value table:")
        print(format_values(policy_iteration.value_table))
        print("policy:")
        print(format_policy(env, lambda s: [a for a, p in enumerate(policy_iteration.get_policy(s)) if p > 0]))
