"""Value iteration on the 5x5 grid world (book: 1-grid-world/2-value-iteration).

Dynamic programming with a known model: one synchronous sweep of the Bellman optimality equation

    V(s) <- max_a [ r(s, a) + gamma * V(s') ]

repeated until the values stop changing. The policy is never stored: the greedy actions are read off the
values whenever they are needed (`get_action` returns all maximising actions).

With a display, the book's window opens: Calculate = one sweep, Print Policy = the greedy arrows, Move = walk
the agent, Clear = start over. Without one (or with --no-render), the script sweeps to convergence and prints
the values and the greedy policy.

This chapter differs from the shared CLI: it has no episodes and saves nothing (the book's does not either).
Ctrl-C or `kill` closes the window, or stops the headless run, and exits with status 130.
"""
import argparse
import os
import random
import signal
import sys
import tkinter as tk
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))              # import this chapter's own environment.py
from environment import Env, GraphicDisplay  # noqa: E402

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


# ---- headless run: iterate to convergence and print ----
ARROWS = "↑↓←→"


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


# Tk's mainloop waits inside Tcl, where Python's signal handlers do not run until some event comes: a timer
# every 100 ms lets them run, and closes the window once Ctrl-C or kill has raised the stop flag.
def close_on_stop(window, stop, every_ms=100):
    if stop.requested:
        window.destroy()
    else:
        window.after(every_ms, close_on_stop, window, stop, every_ms)


# ---- plumbing: the same text in every chapter that has it (tests/test_plumbing.py checks); safe to skip ----
class StopFlag:
    """Ctrl-C (SIGINT) and `kill` (SIGTERM) only raise this flag; every loop looks at it between steps, then
    stops, and the run saves once and exits 130. A second signal while saving changes nothing (the save goes
    on). No KeyboardInterrupt is ever raised: one raised inside a TensorFlow call or a garbage-collection
    callback can be lost (training goes on) or crash the process."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGINT, self.request)
        signal.signal(signal.SIGTERM, self.request)

    def request(self, signum, frame):
        self.requested = True


def display_available():
    """Is there a screen to draw on? On Linux a window needs an X or Wayland display (SSH sessions, servers
    and WSL without WSLg have none); Windows and macOS always have one."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# ---- the command line and the run ----
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=None,
                        help="open the book's window; None: when a display is available")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for the sampled moves; None: a different run every time")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    stop = StopFlag()                           # from here on Ctrl-C and kill only raise stop.requested
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
    value_iteration = ValueIteration(env)
    if render:
        try:
            window = GraphicDisplay(value_iteration)
        except tk.TclError as error:            # DISPLAY names a screen, but none answers there
            print(f"cannot open a window ({error}): running headless")
            render = False
    if render:
        print("window open: Calculate / Print Policy / Move / Clear; close it (or Ctrl-C) to quit")
        close_on_stop(window, stop)
        window.mainloop()
    else:
        sweeps = solve(value_iteration, stop)
        if sweeps is not None:
            print(f"value iteration converged after {sweeps} sweeps (gamma = {DISCOUNT_FACTOR})")
            print("value table:")
            print(format_values(value_iteration.value_table))
            print("policy:")
            print(format_policy(env, value_iteration.get_action))
    if stop.requested:
        print("interrupted: nothing saved (this chapter saves nothing)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
