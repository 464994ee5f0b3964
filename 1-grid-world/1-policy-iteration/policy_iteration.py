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
Ctrl-C, `kill` or a closed terminal closes the window, or stops the headless run, and exits with status 130.
The world and its window live in environment.py, as in the book, with the text and the GIF of a solution;
plumbing.py holds the jobs every chapter shares (safe to skip).
"""
import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))     # this chapter's own environment.py and plumbing.py
from plumbing import (StopFlag, add_seed_argument, catch_signals_at_start, ensure_writable, gif_path,  # noqa: E402
                      headless_unless_display, seed_everything)
catch_signals_at_start(__name__)            # Ctrl-C, kill or a closed terminal from here on: exit 130 in one line
import numpy as np  # noqa: E402
from environment import Env, close_on_stop, format_policy, format_values, open_window, show_greedy_path  # noqa: E402

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


# ---- headless run: iterate to convergence, then print ----
def solve(agent, stop=None, theta=1e-10, max_rounds=100):
    """Full policy iteration: evaluate until values move less than theta, improve; stop when stable.
    Returns the number of improvements, or None once the stop flag (Ctrl-C or kill) is raised."""
    for round_number in range(1, max_rounds + 1):
        while True:
            if stop and stop.requested:
                return None
            before = np.array(agent.value_table)
            agent.policy_evaluation()
            if np.max(np.abs(np.array(agent.value_table) - before)) < theta:
                break
        before_policy = agent.policy_table
        agent.policy_improvement()
        if agent.policy_table == before_policy:
            return round_number
    return max_rounds


# ---- the command line and the run ----
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=None,
                        help="open the book's window; None: when a display is available")
    add_seed_argument(parser, help="seed for the sampled moves; None: a different run every time")
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif",
                        help="at the end, save the greedy path from the start as an animated GIF (after the window "
                             "closes: of the policy as it stands then)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    stop = StopFlag()                           # from here on Ctrl-C and kill only raise stop.requested
    if sys.stdout.encoding and sys.stdout.encoding.lower() not in ("utf-8", "utf8"):
        sys.stdout.reconfigure(errors="replace")            # the policy's arrows: "?" where they cannot print
    seed_everything(args.seed)                  # move samples its actions from the policy
    if args.record is not None:
        ensure_writable(args.record.parent.resolve())
    render = headless_unless_display(args.render is not False, how="the window needs a display")

    env = Env()
    policy_iteration = PolicyIteration(env)

    def best_actions(state):                    # the actions the policy takes, with probability > 0
        return [action for action, prob in enumerate(policy_iteration.get_policy(state)) if prob > 0]

    grid_world = open_window(policy_iteration) if render else None
    if grid_world is not None:                  # the book's way: one click = one step of the algorithm
        print("window open: Evaluate / Improve / move / reset; close it (or Ctrl-C) to quit")
        close_on_stop(grid_world, stop)
        grid_world.mainloop()
        if args.record is not None and not stop.requested:
            show_greedy_path(env, best_actions, args.record)
    else:
        rounds = solve(policy_iteration, stop)
        if rounds is not None:
            print(f"policy iteration converged after {rounds} improvements (gamma = {DISCOUNT_FACTOR})")
            print("value table:")
            print(format_values(policy_iteration.value_table))
            print("policy:")
            print(format_policy(env, best_actions))
            show_greedy_path(env, best_actions, args.record)
    if stop.requested:
        print("interrupted: nothing saved (this chapter saves nothing)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
