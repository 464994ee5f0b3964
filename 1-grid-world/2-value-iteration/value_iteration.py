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
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))              # import this chapter's own environment.py
from environment import GOAL, TRIANGLES, Env, GraphicDisplay, tk  # noqa: E402

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


def greedy_path(env, best_actions_of):
    """From the top-left cell, always the first best action, until the goal or a cell seen before (a policy
    that comes back to a cell would loop for ever). Cells are [row, col]."""
    state, path = [0, 0], [[0, 0]]
    while not env.is_terminal(state):
        state = env.state_after_action(state, best_actions_of(state)[0])
        if state in path:
            return path + [state], "loops"
        path.append(state)
    return path, f"reaches the circle in {len(path) - 1} moves"


def show_greedy_path(env, best_actions_of, record):
    """Print the greedy path; with --record, also save it as an animated GIF (drawn without a window)."""
    path, ending = greedy_path(env, best_actions_of)
    print("greedy path from the start (row, col): " + " -> ".join(f"({row}, {col})" for row, col in path)
          + f": {ending}")
    if record is not None:
        cells = [[col, row] for row, col in path]                   # the picture takes [x, y]
        write_gif(record, grid_animation(cells, GOAL[::-1], [[cell[::-1] for cell in TRIANGLES]] * len(cells)),
                  seconds_per_frame=0.1)


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



def atomic_write(path, write):
    """Call write(tmp) on a temp file beside `path`, then move it into place: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")   # keeps the suffix (.weights.h5 / .png / .csv)
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_writable(folder):
    """Fail before training, in one line, if artefacts could not be saved."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        sys.exit(f"error: cannot write to {folder}: {error.strerror}")


def gif_path(text):
    """--record FILE.gif: a path ending in .gif (the folder is made, and checked, before the run starts)."""
    path = Path(text)
    if path.suffix.lower() != ".gif":
        raise argparse.ArgumentTypeError(f"must be a file name ending in .gif, got {text!r}")
    return path


def write_gif(path, frames, seconds_per_frame, max_frames=400):
    """An animated, looping GIF of `frames` (Pillow images or H×W×3 uint8 arrays), written atomically. A long
    recording keeps every k-th frame (each shown k times longer, so it plays at the real pace) to stay within
    `max_frames`; each frame gets a palette of its own colours."""
    from PIL import Image                               # Pillow comes with matplotlib
    step = max(1, -(-len(frames) // max_frames))
    images = []
    for frame in frames[::step]:
        image = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame, dtype=np.uint8))
        images.append(image.convert("RGB").quantize(colors=64))
    duration = max(20, round(1000 * seconds_per_frame * step))    # milliseconds per frame
    atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                  duration=duration, loop=0, optimize=True))
    print(f"recorded {len(images)} frames to {path}")


def grid_picture(agent, goal, triangles, columns=5, rows=5, unit=60):
    """The grid world drawn with Pillow from [x, y] cells, no window needed (what --record saves): the agent a
    red square, the goal a yellow circle, the triangles blue, on white cells with black lines, as in the window."""
    from PIL import Image, ImageDraw
    image = Image.new("RGB", (columns * unit + 1, rows * unit + 1), "white")
    draw = ImageDraw.Draw(image)
    for line in range(columns + 1):
        draw.line([(line * unit, 0), (line * unit, rows * unit)], fill="black")
    for line in range(rows + 1):
        draw.line([(0, line * unit), (columns * unit, line * unit)], fill="black")
    for x, y in triangles:
        left, top = x * unit, y * unit
        draw.polygon([(left + unit / 2, top + unit / 5), (left + unit / 5, top + 4 * unit / 5),
                      (left + 4 * unit / 5, top + 4 * unit / 5)], fill="#3c8dbc", outline="black")
    x, y = goal
    draw.ellipse([x * unit + unit / 5, y * unit + unit / 5, (x + 1) * unit - unit / 5, (y + 1) * unit - unit / 5],
                 fill="#f0c419", outline="black")
    x, y = agent
    draw.rectangle([x * unit + unit / 4, y * unit + unit / 4, (x + 1) * unit - unit / 4, (y + 1) * unit - unit / 4],
                   fill="#e74c3c", outline="black")
    return image


def grid_animation(cells, goal, triangles, per_move=4):
    """Frames of a walk through the grid world: the agent at cells[i] and the triangles at triangles[i] after
    step i, sliding from one step to the next in `per_move` frames, then resting on the last step a moment."""
    def between(a, b, share):
        return [a[0] + share * (b[0] - a[0]), a[1] + share * (b[1] - a[1])]
    frames = []
    for i in range(len(cells) - 1):
        for part in range(per_move):
            shapes = [between(a, b, part / per_move) for a, b in zip(triangles[i], triangles[i + 1])]
            frames.append(grid_picture(between(cells[i], cells[i + 1], part / per_move), goal, shapes))
    return frames + [grid_picture(cells[-1], goal, triangles[-1])] * (2 * per_move)


# ---- the command line and the run ----
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=None,
                        help="open the book's window; None: when a display is available")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for the sampled moves; None: a different run every time")
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif",
                        help="at the end, save the greedy path from the start as an animated GIF (after the window "
                             "closes: of the policy as it stands then)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    stop = StopFlag()                           # from here on Ctrl-C and kill only raise stop.requested
    if sys.stdout.encoding and sys.stdout.encoding.lower() not in ("utf-8", "utf8"):
        sys.stdout.reconfigure(errors="replace")
    if args.seed is not None:
        random.seed(args.seed)
        np.random.seed(args.seed)

    if args.record is not None:
        ensure_writable(args.record.parent.resolve())
    render = args.render is not False
    if render and not display_available():
        print("no display found: running headless (the window needs a display)")
        render = False
    if render and tk is None:
        print("this Python has no tkinter: running headless (see the README's troubleshooting)")
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
