"""The grid world of the Monte Carlo, SARSA and Q-learning chapters.

Five by five cells. The agent (the red square) starts in the top-left cell. Entering the circle ends the
episode with reward +100, entering a triangle ends it with -100, every other move gives 0. A move that would
leave the grid leaves the agent where it is. States are [x, y] = [column, row], as in the book.

The dynamics (`reset`, `step`) come first and need no window: `Env()` runs headless at full speed, with no
sleeps. `Env(render=True)` also opens a Tk window that shows the agent moving and, through
`print_value_all`, the agent's table: a Q table as four numbers near the edges of every visited cell
(up, down, left, right), a V table as one number per visited cell.

At the end: `make_env` (the world with its window where one can open, else headless after a one-line note);
`grid_picture` / `grid_animation`, the world drawn with Pillow, no window needed, for the GIF of --record;
`greedy_path` / `show_greedy_path`, the walk of a learned greedy policy from the start, printed after training;
`save_table`, the end of every run: the learned table saved, whatever ended the run.

This file is the same in 3-monte-carlo, 4-sarsa and 5-q-learning except for TITLE (a test checks it),
so that each folder stays standalone without the copies drifting apart.
"""
try:
    import tkinter as tk
except ImportError:          # a Python built without Tk: the world still runs headless
    tk = None

import numpy as np

from plumbing import atomic_write, try_save, write_gif    # this folder's plumbing.py (on sys.path: the agent script)

TITLE = "monte carlo"

# ---- the world ----
WIDTH, HEIGHT = 5, 5                        # cells
START = (0, 0)                              # [x, y] of the agent after reset()
GOAL = (2, 2)                               # the circle: +100, the episode ends
TRIANGLES = ((2, 1), (1, 2))                # -100, the episode ends (row 1 col 2, row 2 col 1)
ACTIONS = ("up", "down", "left", "right")   # action 0, 1, 2, 3: the book's order
MOVES = ((0, -1), (0, 1), (-1, 0), (1, 0))  # (dx, dy) of each action; y grows downwards

# ---- the drawing ----
UNIT = 100                                  # pixels per cell
RENDER_DELAY = 0.06                         # seconds per step while rendering (the book's pace)
VALUE_FONT = ("Helvetica", 10)
# where Q(s, up/down/left/right) is written: (dx, dy) from the cell's centre and the side of the text
# that sits there, so that the numbers stay inside the cell
EDGE_TEXT = (((0, -46), "n"), ((0, 46), "s"), ((-46, 0), "w"), ((46, 0), "e"))
V_TEXT = ((0, 46), "s")                     # where V(s) is written


class Env:
    # render=True opens the window; RuntimeError (one line) when none can open: no Tk, or no screen.
    def __init__(self, render=False, delay=RENDER_DELAY):
        self.width, self.height = WIDTH, HEIGHT
        self.n_actions = len(ACTIONS)
        self.state = list(START)
        self.visited = {START}          # cells the agent has been in: print_value_all shows these
        self.window = None
        if render:
            self._open_window(delay)

    # ---- dynamics: no window needed ----

    # The cell an action leads to; bumping into the border means staying put.
    def state_after_action(self, state, action):
        dx, dy = MOVES[action]
        x = min(max(state[0] + dx, 0), WIDTH - 1)
        y = min(max(state[1] + dy, 0), HEIGHT - 1)
        return [x, y]

    # The reward for entering a cell, and whether the episode ends there.
    def reward_and_done(self, state):
        cell = tuple(state)
        if cell == GOAL:
            return 100, True
        if cell in TRIANGLES:
            return -100, True
        return 0, False

    def reset(self):
        self.state = list(START)
        self.visited.add(START)
        if self.window is not None:
            self._move_agent_sprite()
            self.render()
        return list(self.state)

    def step(self, action):
        self.state = self.state_after_action(self.state, action)
        self.visited.add(tuple(self.state))
        reward, done = self.reward_and_done(self.state)
        if self.window is not None:
            self._move_agent_sprite()
            self.render()
        return list(self.state), reward, done

    # ---- drawing: only with render=True ----

    @property
    def rendering(self):
        return self.window is not None

    def _open_window(self, delay):
        if tk is None:
            raise RuntimeError("this Python has no tkinter")
        self.delay = delay
        try:
            self.window = tk.Tk()
        except tk.TclError as error:     # DISPLAY names a screen, but none answers there
            raise RuntimeError(f"cannot open a window ({error})") from None
        self.window.title(TITLE)
        self.window.resizable(False, False)
        self.window.protocol("WM_DELETE_WINDOW", self._on_close_button)
        self.canvas = tk.Canvas(self.window, bg="white", width=WIDTH * UNIT, height=HEIGHT * UNIT,
                                highlightthickness=0)
        for column in range(1, WIDTH):
            self.canvas.create_line(column * UNIT, 0, column * UNIT, HEIGHT * UNIT)
        for row in range(1, HEIGHT):
            self.canvas.create_line(0, row * UNIT, WIDTH * UNIT, row * UNIT)
        for x, y in TRIANGLES:
            cx, cy = self._centre((x, y))
            self.canvas.create_polygon(cx, cy - 30, cx - 30, cy + 25, cx + 30, cy + 25,
                                       fill="#3c8dbc", outline="black", tags="triangle")
        cx, cy = self._centre(GOAL)
        self.canvas.create_oval(cx - 30, cy - 30, cx + 30, cy + 30, fill="#f0c419", outline="black",
                                tags="circle")
        self.agent_sprite = self.canvas.create_rectangle(0, 0, 0, 0, fill="#e74c3c", outline="black",
                                                         tags="agent")
        self._move_agent_sprite()
        self.canvas.pack()
        self.value_texts = {}            # (x, y, action or None) -> canvas text item, created on first use
        self._tick = tk.BooleanVar(master=self.window)
        self._pending = None

    def _centre(self, cell):
        return cell[0] * UNIT + UNIT // 2, cell[1] * UNIT + UNIT // 2

    def _move_agent_sprite(self):
        cx, cy = self._centre(self.state)
        self.canvas.coords(self.agent_sprite, cx - 20, cy - 20, cx + 20, cy + 20)
        self.canvas.tag_raise(self.agent_sprite)

    # Show the window's current state, then wait `delay` seconds inside Tk's event loop, which keeps
    # handling clicks, redraws and the close button meanwhile, so the window never freezes. The timer is
    # a plain Tcl command (no Python callback); Ctrl-C or kill only raise the script's stop flag, which the
    # training loop looks at once the wait is over.
    def render(self):
        if self.window is None:
            return
        self.window.update()
        if self.window is not None and self.delay > 0:
            self._pending = self.window.tk.call("after", int(self.delay * 1000), "set", str(self._tick), 1)
            self.window.wait_variable(self._tick)
            self._pending = None

    # Write the agent's table on the grid: Q (rows, cols, 4) near the four edges of every visited
    # cell that is not terminal; V (rows, cols) under the middle of every visited cell.
    def print_value_all(self, table):
        if self.window is None:
            return
        for x, y in self.visited:
            if len(table.shape) == 2:
                self._write_value((x, y), None, V_TEXT, table[y][x])
            elif not self.reward_and_done((x, y))[1]:
                for action, place in enumerate(EDGE_TEXT):
                    self._write_value((x, y), action, place, table[y][x][action])

    def _write_value(self, cell, action, place, value):
        key = (cell[0], cell[1], action)
        text = f"{round(float(value), 2) + 0.0:.2f}"      # + 0.0 turns -0.0 into 0.0
        if key not in self.value_texts:
            cx, cy = self._centre(cell)
            (dx, dy), anchor = place
            self.value_texts[key] = self.canvas.create_text(cx + dx, cy + dy, text=text, anchor=anchor,
                                                            font=VALUE_FONT, tags="value")
        else:
            self.canvas.itemconfigure(self.value_texts[key], text=text)

    # The user closed the window: training goes on headless and still saves its table at the end.
    def _on_close_button(self):
        print("window closed: going on without rendering")
        self.close()

    def close(self):
        if self.window is None:
            return
        window, self.window = self.window, None
        if self._pending is not None:
            window.tk.call("after", "cancel", self._pending)
            self._tick.set(True)         # release a render() that is waiting
        window.destroy()


# ---- making the world; drawing it without a window (what --record saves) ----

# The world, with its window when asked. DISPLAY can name a screen that does not answer, and a Python can
# lack Tk: then the run goes on headless after a one-line note.
def make_env(render, delay):
    if render:
        try:
            return Env(render=True, delay=delay)
        except RuntimeError as error:
            print(f"{error}: running headless")
    return Env()


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


# ---- watching what was learned: the greedy walk from the start ----

# Follow best_action(state), a deterministic policy, from the start until the episode would end or a cell
# repeats (a deterministic policy that comes back to a cell loops for ever): the cells walked, and how it ends.
def greedy_path(env, best_action):
    state, path = list(START), [list(START)]
    while not env.reward_and_done(state)[1]:
        state = env.state_after_action(state, best_action(state))
        if state in path:
            return path + [state], "loops"
        path.append(state)
    ending = "reaches the circle" if env.reward_and_done(state)[0] > 0 else "ends on a triangle"
    return path, f"{ending} in {len(path) - 1} moves"


def show_greedy_path(env, best_action, record=None):
    """Print the greedy path from the start as (row, col) cells and how it ends; with `record` (a .gif path),
    also write it as an animated GIF."""
    path, ending = greedy_path(env, best_action)
    print("greedy path from the start (row, col): "
          + " -> ".join(f"({y}, {x})" for x, y in path) + f": {ending}")
    if record is not None:      # the last thing written: where it fails (a folder in the way), one line and exit 1
        frames = grid_animation(path, GOAL, [TRIANGLES] * len(path))
        try_save(record.name, record.parent, lambda: write_gif(record, frames, seconds_per_frame=0.1), final=True)


# ---- the end of training, whatever ended it: the table saved ----

def save_table(table, path, what, stop):
    """Save the learned table as .npy at `path` (atomically: never half-written), then say so, `what` naming its
    axes, after a line about the stop signal if one came. A save that fails (a full or read-only disk, a folder
    where the file goes) ends the run in one line naming the folder, exit 1. The table is saved before anything is
    printed: after a closed terminal (SIGHUP) printing fails, and the table must not be lost with it."""
    stopped = stop.requested
    try_save(path.name, path.parent, lambda: atomic_write(path, lambda tmp: np.save(tmp, table)), final=True)
    if stopped:
        print("interrupted: saving what has been learned so far")
    print(f"{what} saved to {path}")
