"""The moving-obstacle grid world of the Deep SARSA and REINFORCE chapters.

Five by five cells. The agent (the red square) starts in the top-left cell, [x, y] = [0, 0]; x is the
column, y the row, growing downwards. The goal (the circle) sits at [4, 4] and never moves. Three
obstacles (the triangles) start at [0, 1], [1, 2] and [2, 3], all moving right. On every other step
(steps 1, 3, 5, ... of an episode, before the agent moves) each obstacle slides one cell along its row;
an obstacle in column 4 turns left, one in column 0 turns right, so they bounce between the two edges.

Actions: 0 up, 1 down, 2 right, 3 left, 4 stay. A move off the grid leaves the agent where it is.
Reward of a step: the sum of the rewards of the objects on the agent's cell after the step (-1 for an
obstacle, +1 for the goal), plus STEP_REWARD (0 here; the REINFORCE chapter charges -0.1 per step).
Hitting an obstacle costs -1 and the episode goes on; it ends (done) at the goal.

State, 15 numbers, object by object in the order above:
    for each obstacle  [dx, dy, -1, direction]     dx, dy = object - agent
    for the goal       [dx, dy, +1]
with the book's encoding of an obstacle's direction: -1 while it moves right, +1 while it moves left.

Differences from the book's code: the step counter that times the obstacles starts again with every
episode (the book's survived resets, so episodes began at different obstacle phases), and an episode stops
after `max_steps` steps (MAX_STEPS unless told otherwise). That cap is a time limit, not a failure or a
terminal state: `step` still returns done=False and `env.truncated` turns True; a learner that
bootstraps should go on doing so from the last state. The world has no randomness: the same actions
always give the same episode.

The dynamics (`reset`, `step`) need no window: `Env()` runs headless at full speed, with no sleeps.
`Env(render=True)` also opens a Tk window that shows the episode, pausing `delay` seconds per step.
`make_env` is what the agent scripts call: the window where one can open, else headless with a one-line note.
For --record, `remember` notes the cells after every step and `write_walk` draws them with Pillow
(`grid_picture`, `grid_animation`): no window needed.

This file is the same in 6-deep-sarsa and 7-reinforce except for TITLE and STEP_REWARD (a test checks
it), so that each folder stays standalone without the copies drifting apart.
"""
import numpy as np

from plumbing import headless_unless_display, write_gif

try:
    import tkinter as tk
except ImportError:          # a Python built without Tk: the world still runs headless
    tk = None

TITLE = "DeepSARSA"
STEP_REWARD = 0.0                           # added to every step's reward

# ---- the world ----
WIDTH, HEIGHT = 5, 5                        # cells
START = (0, 0)                              # [x, y] of the agent after reset()
OBSTACLE_STARTS = ((0, 1), (1, 2), (2, 3))  # [x, y] of the three obstacles after reset()
GOAL = (4, 4)
OBSTACLE_REWARD = -1
GOAL_REWARD = 1
MOVING_RIGHT, MOVING_LEFT = -1, 1           # an obstacle's direction, as the book writes it in the state
ACTIONS = ("up", "down", "right", "left", "stay")         # action 0, 1, 2, 3, 4: the book's order
MOVES = ((0, -1), (0, 1), (1, 0), (-1, 0), (0, 0))        # (dx, dy) of each action
STATE_SIZE = 4 * len(OBSTACLE_STARTS) + 3   # 15
MAX_STEPS = 500                             # the episode cap (truncation); 2% of random walks are longer

# ---- the drawing ----
UNIT = 50                                   # pixels per cell
RENDER_DELAY = 0.07                         # seconds per step while rendering (the book's pace)


class Env:
    def __init__(self, render=False, delay=RENDER_DELAY, max_steps=MAX_STEPS):
        self.action_size = len(ACTIONS)
        self.state_size = STATE_SIZE
        self.max_steps = max_steps
        self.window = None
        self.reset_world()
        if render:
            self._open_window(delay)

    # ---- dynamics: no window needed ----

    # Everything back to the start of an episode, the obstacles' clock included.
    def reset_world(self):
        self.counter = 0                    # steps taken in this episode
        self.done = False
        self.agent = list(START)
        self.obstacles = [[x, y, MOVING_RIGHT] for x, y in OBSTACLE_STARTS]   # [x, y, direction]

    def reset(self):
        self.reset_world()
        if self.window is not None:
            self._draw_objects()
            self.render()
        return self.get_state()

    # The cell an action leads to; bumping into the border means staying put.
    def state_after_action(self, state, action):
        dx, dy = MOVES[action]
        x = min(max(state[0] + dx, 0), WIDTH - 1)
        y = min(max(state[1] + dy, 0), HEIGHT - 1)
        return [x, y]

    # Slide every obstacle one cell along its row, turning around at the edges.
    def move_obstacles(self):
        for obstacle in self.obstacles:
            if obstacle[0] == WIDTH - 1:
                obstacle[2] = MOVING_LEFT
            elif obstacle[0] == 0:
                obstacle[2] = MOVING_RIGHT
            obstacle[0] += 1 if obstacle[2] == MOVING_RIGHT else -1

    # The summed reward of the objects on a cell, and whether the cell is the goal.
    def check_if_reward(self, cell):
        reward = sum(OBSTACLE_REWARD for x, y, _ in self.obstacles if [x, y] == cell)
        if cell == list(GOAL):
            return reward + GOAL_REWARD, True
        return reward, False

    def step(self, action):
        self.counter += 1
        if self.counter % 2 == 1:           # the obstacles move on every other step, first
            self.move_obstacles()
        self.agent = self.state_after_action(self.agent, action)
        reward, self.done = self.check_if_reward(self.agent)
        if self.window is not None:
            self._draw_objects()
            self.render()
        return self.get_state(), reward + STEP_REWARD, self.done

    # The episode hit the step cap without reaching the goal (a time limit, not a terminal state).
    @property
    def truncated(self):
        return not self.done and self.counter >= self.max_steps

    # The 15 numbers the agent sees (see the module docstring), as a float32 vector.
    def get_state(self):
        ax, ay = self.agent
        state = []
        for x, y, direction in self.obstacles:
            state += [x - ax, y - ay, OBSTACLE_REWARD, direction]
        state += [GOAL[0] - ax, GOAL[1] - ay, GOAL_REWARD]
        return np.array(state, dtype=np.float32)

    # ---- drawing: only with render=True ----

    @property
    def rendering(self):
        return self.window is not None

    def _open_window(self, delay):
        self.delay = delay
        self.window = tk.Tk()
        self.window.title(TITLE)
        self.window.resizable(False, False)
        self.window.protocol("WM_DELETE_WINDOW", self._on_close_button)
        self.canvas = tk.Canvas(self.window, bg="white", width=WIDTH * UNIT, height=HEIGHT * UNIT,
                                highlightthickness=0)
        for column in range(1, WIDTH):
            self.canvas.create_line(column * UNIT, 0, column * UNIT, HEIGHT * UNIT)
        for row in range(1, HEIGHT):
            self.canvas.create_line(0, row * UNIT, WIDTH * UNIT, row * UNIT)
        cx, cy = self._centre(GOAL)
        self.canvas.create_oval(cx - 15, cy - 15, cx + 15, cy + 15, fill="#f0c419", outline="black",
                                tags="circle")
        self.obstacle_sprites = [
            self.canvas.create_polygon(0, 0, 0, 0, 0, 0, fill="#3c8dbc", outline="black",
                                       tags="triangle")
            for _ in self.obstacles]
        self.agent_sprite = self.canvas.create_rectangle(0, 0, 0, 0, fill="#e74c3c", outline="black",
                                                         tags="agent")
        self._draw_objects()
        self.canvas.pack()
        self._tick = tk.BooleanVar(master=self.window)
        self._pending = None

    def _centre(self, cell):
        return cell[0] * UNIT + UNIT // 2, cell[1] * UNIT + UNIT // 2

    # Put the sprites where the dynamics say the objects are.
    def _draw_objects(self):
        for sprite, (x, y, _) in zip(self.obstacle_sprites, self.obstacles):
            cx, cy = self._centre((x, y))
            self.canvas.coords(sprite, cx, cy - 15, cx - 15, cy + 12, cx + 15, cy + 12)
        cx, cy = self._centre(self.agent)
        self.canvas.coords(self.agent_sprite, cx - 10, cy - 10, cx + 10, cy + 10)
        self.canvas.tag_raise(self.agent_sprite)

    # Show the window's current state, then wait `delay` seconds while Tk keeps handling events
    # (clicks, redraws, closing), so the window never freezes.
    def render(self):
        if self.window is None:
            return
        self.window.update()
        if self.window is not None and self.delay > 0:
            self._pending = self.window.after(int(self.delay * 1000), self._tick.set, True)
            self.window.wait_variable(self._tick)
            self._pending = None

    # The user closed the window: training goes on headless and still saves its weights at the end.
    def _on_close_button(self):
        print("window closed: going on without rendering")
        self.close()

    # Close the window; the world goes on headless.
    def close(self):
        if self.window is None:
            return
        window, self.window = self.window, None
        if self._pending is not None:
            window.after_cancel(self._pending)
            self._tick.set(True)         # release a render() that is waiting
        window.destroy()


# ---- making the world: the window when asked and possible ----

# The world, with its window when asked and possible; otherwise headless, with a one-line note.
def make_env(render, delay, max_steps):
    render = headless_unless_display(render)
    try:
        return Env(render=render, delay=delay, max_steps=max_steps)
    except Exception as error:                # tkinter.TclError (a display that refuses), or no Tk at all
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"cannot open the grid window ({reason}): running headless")
        return Env(max_steps=max_steps)


# ---- drawing for --record: Pillow pictures, no window ----

# --record: the agent's cell and the triangles' cells after every step, for grid_animation.
def remember(walk, env):
    if walk is not None:
        walk.append((list(env.agent), [[x, y] for x, y, _ in env.obstacles]))


# --record FILE.gif: the walk that `remember` noted, as an animated GIF (nothing when no step was noted).
def write_walk(path, walk):
    if walk:
        frames = grid_animation([cell for cell, _ in walk], GOAL, [shapes for _, shapes in walk], per_move=2)
        write_gif(path, frames, seconds_per_frame=0.07)


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
