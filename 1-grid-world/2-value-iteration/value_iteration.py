"""Value iteration on the 5x5 grid world (book: 1-grid-world/2-value-iteration).

Dynamic programming with a known model: one synchronous sweep of the Bellman optimality equation

    V(s) <- max_a [ r(s, a) + gamma * V(s') ]

repeated until the values stop changing. The policy is never stored: the greedy actions are read off the
values whenever they are needed (`get_action` returns all maximising actions).

With a display, the book's window opens: Calculate = one sweep, Print Policy = the greedy arrows, Move = walk
the agent, Clear = start over. Without one (or with --no-render), the script sweeps to convergence and prints
the values and the greedy policy.

This chapter differs from the shared CLI: it has no episodes and saves nothing (the book's does not either).
Ctrl-C, `kill` or a closed terminal closes the window, or stops the headless run, and exits with status 130.
The world and its window live in environment.py, as in the book, with the text and the GIF of a solution;
plumbing.py holds the jobs every chapter shares (safe to skip).
"""
import argparse
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


class ValueIteration:
    def __init__(self, env):
        self.env = env
        self.discount_factor = DISCOUNT_FACTOR
        self.reset()

    # Start over: every value 0.
    def reset(self):
        self.value_table = [[0.0] * self.env.width for _ in range(self.env.height)]

    # One sweep of the Bellman optimality equation over all states, from a copy (synchronous).
    def value_iteration(self):
        next_value_table = [[0.0] * self.env.width for _ in range(self.env.height)]
        for state in self.env.get_all_states():
            if self.env.is_terminal(state):
                continue
            next_value_table[state[0]][state[1]] = max(
                self.action_value(state, action) for action in self.env.possible_actions)
        self.value_table = next_value_table

    # r(s, a) + gamma * V(s'): the value of one action under the current value table.
    def action_value(self, state, action):
        next_state = self.env.state_after_action(state, action)
        reward = self.env.get_reward(state, action)
        return reward + self.discount_factor * self.get_value(next_state)

    # All actions that maximise r + gamma * V(s') (none at the terminal state).
    def get_action(self, state):
        if self.env.is_terminal(state):
            return []
        values = [self.action_value(state, action) for action in self.env.possible_actions]
        best = max(values)
        return [action for action, value in enumerate(values) if best - value <= TIE_TOLERANCE]

    def get_value(self, state):
        return self.value_table[state[0]][state[1]]


# ---- headless run: iterate to convergence, then print ----
def solve(agent, stop=None, theta=1e-10, max_sweeps=10_000):
    """Sweep until no value moves by theta or more; return the number of sweeps, or None once the stop flag
    (Ctrl-C or kill) is raised."""
    for sweep in range(1, max_sweeps + 1):
        if stop and stop.requested:
            return None
        before = np.array(agent.value_table)
        agent.value_iteration()
        if np.max(np.abs(np.array(agent.value_table) - before)) < theta:
            return sweep
    return max_sweeps


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
    seed_everything(args.seed)                  # Move picks among tied best actions at random
    if args.record is not None:
        ensure_writable(args.record.parent.resolve())
    render = headless_unless_display(args.render is not False, how="the window needs a display")

    env = Env()
    value_iteration = ValueIteration(env)
    grid_world = open_window(value_iteration) if render else None
    if grid_world is not None:                  # the book's way: Calculate = one sweep
        print("window open: Calculate / Print Policy / Move / Clear; close it (or Ctrl-C) to quit")
        close_on_stop(grid_world, stop)
        grid_world.mainloop()
        if args.record is not None and not stop.requested:
            show_greedy_path(env, value_iteration.get_action, args.record)
    else:
        sweeps = solve(value_iteration, stop)
        if sweeps is not None:
            print(f"value iteration converged after {sweeps} sweeps (gamma = {DISCOUNT_FACTOR})")
            print("value table:")
            print(format_values(value_iteration.value_table))
            print("policy:")
            print(format_policy(env, value_iteration.get_action))
            show_greedy_path(env, value_iteration.get_action, args.record)
    if stop.requested:
        print("interrupted: nothing saved (this chapter saves nothing)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
