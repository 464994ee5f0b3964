"""The 5x5 grid world of the policy-iteration chapter.

The book's two parts:
- ``Env``: the world's model (rewards and deterministic transitions) that dynamic programming reads.
  It has no window, so the maths runs anywhere.
- ``GraphicDisplay``: the tkinter window with the buttons Evaluate / Improve / move / reset. Each click does
  one step of the algorithm and draws what changed: values, policy arrows, the walking agent.

and what this repository adds around them:
- the text and pictures of a solution: the value table and policy that the headless run prints, and the
  greedy path that --record draws without a window (``grid_picture``, ``grid_animation``).
- the window's life: ``open_window`` (or a one-line note where none can open), ``close_on_stop``.

States are [row, col]; (0, 0) is the top-left cell. Actions: 0 up, 1 down, 2 left, 3 right.
"""
try:
    import tkinter as tk
except ImportError:          # a Python built without Tk: the maths and the headless run still work
    tk = None

from plumbing import try_save, write_gif

WIDTH, HEIGHT = 5, 5                       # cells
UNIT = 100                                 # pixels per cell
POSSIBLE_ACTIONS = [0, 1, 2, 3]            # up, down, left, right
ACTIONS = [(-1, 0), (1, 0), (0, -1), (0, 1)]  # (row, col) change of each action
GOAL = [2, 2]                              # the circle: reward +1, the only terminal state
TRIANGLES = [[1, 2], [2, 1]]               # reward -1 (ordinary states for dynamic programming)


class Env:
    """The grid world's model: reward of the cell entered, moves clipped at the walls, probability 1."""

    def __init__(self):
        self.width, self.height = WIDTH, HEIGHT
        self.possible_actions = POSSIBLE_ACTIONS
        self.reward = [[0.0] * WIDTH for _ in range(HEIGHT)]
        self.reward[GOAL[0]][GOAL[1]] = 1.0
        for row, col in TRIANGLES:
            self.reward[row][col] = -1.0
        self.all_state = [[row, col] for row in range(HEIGHT) for col in range(WIDTH)]

    def get_reward(self, state, action):
        """Reward for taking `action` in `state`: the reward of the cell the agent enters."""
        row, col = self.state_after_action(state, action)
        return self.reward[row][col]

    def state_after_action(self, state, action_index):
        drow, dcol = ACTIONS[action_index]
        return self.check_boundary([state[0] + drow, state[1] + dcol])

    @staticmethod
    def check_boundary(state):
        """A move off the grid leaves the agent where it was."""
        return [min(max(state[0], 0), HEIGHT - 1), min(max(state[1], 0), WIDTH - 1)]

    def get_all_states(self):
        return self.all_state

    @staticmethod
    def is_terminal(state):
        return list(state) == GOAL


# ---- drawing: the window the reader clicks through (the maths above never needs it) ----
AGENT_COLOR, TRIANGLE_COLOR, CIRCLE_COLOR = "#e35d5b", "#4f7fd6", "#f2b134"
ARROW_FROM, ARROW_TO = 14, 38              # arrow length from the cell centre, pixels
MOVE_DELAY_MS = 100                        # pause between two steps of "move"
MAX_MOVE_STEPS = 100                       # a policy that loops stops walking after this many steps


class GraphicDisplay(tk.Tk if tk is not None else object):
    """The book's policy-iteration window: one button click = one step of the algorithm."""

    def __init__(self, agent):
        super().__init__()
        self.title("Policy Iteration")
        self.geometry(f"{WIDTH * UNIT}x{HEIGHT * UNIT + 50}")
        self.agent = agent
        self.env = agent.env
        self.move_delay_ms = MOVE_DELAY_MS
        self.evaluation_count = 0
        self.improvement_count = 0
        self.agent_state = [0, 0]
        self.moving = None                 # the pending `after` id while the agent walks
        self.canvas = self._build_canvas()
        self.buttons = self._build_buttons({"Evaluate": self.evaluate_policy,
                                            "Improve": self.improve_policy,
                                            "move": self.move_by_policy,
                                            "reset": self.reset})

    # Button actions ------------------------------------------------------------------------
    def evaluate_policy(self):
        """One synchronous sweep of the Bellman expectation equation, then show every value."""
        self.evaluation_count += 1
        self.agent.policy_evaluation()
        self.print_value_table(self.agent.value_table)

    def improve_policy(self):
        """Greedy improvement against the current values, then show the policy's arrows."""
        self.improvement_count += 1
        self.agent.policy_improvement()
        self.draw_policy(self.agent.policy_table)

    def move_by_policy(self):
        """Walk the agent from the start, one step every `move_delay_ms`, until it reaches the circle."""
        if self.moving is not None:
            return
        self.place_agent([0, 0])
        self._move_step(0)

    def reset(self):
        """Back to the start: zero values, uniform policy, agent at (0, 0)."""
        self.stop_moving()
        self.agent.reset()
        self.evaluation_count = self.improvement_count = 0
        self.canvas.delete("value", "arrow")
        self.place_agent([0, 0])

    # Animation -----------------------------------------------------------------------------
    def _move_step(self, steps):
        if self.env.is_terminal(self.agent_state) or steps >= MAX_MOVE_STEPS:
            self.moving = None
            return
        action = self.agent.get_action(self.agent_state)
        self.place_agent(self.env.state_after_action(self.agent_state, action))
        self.moving = self.after(self.move_delay_ms, self._move_step, steps + 1)

    def stop_moving(self):
        if self.moving is not None:
            self.after_cancel(self.moving)
            self.moving = None

    # Drawing -------------------------------------------------------------------------------
    def _build_canvas(self):
        canvas = tk.Canvas(self, bg="white", width=WIDTH * UNIT, height=HEIGHT * UNIT,
                           highlightthickness=0)
        for col in range(WIDTH + 1):
            canvas.create_line(col * UNIT, 0, col * UNIT, HEIGHT * UNIT)
        for row in range(HEIGHT + 1):
            canvas.create_line(0, row * UNIT, WIDTH * UNIT, row * UNIT)
        for row, col in TRIANGLES:
            x, y = col * UNIT, row * UNIT
            canvas.create_polygon(x + 50, y + 20, x + 22, y + 75, x + 78, y + 75,
                                  fill=TRIANGLE_COLOR, tags="triangle")
        x, y = GOAL[1] * UNIT, GOAL[0] * UNIT
        canvas.create_oval(x + 22, y + 22, x + 78, y + 78, fill=CIRCLE_COLOR, tags="circle")
        for row in range(HEIGHT):
            for col in range(WIDTH):
                if self.env.reward[row][col]:
                    canvas.create_text(col * UNIT + 5, row * UNIT + UNIT - 5, anchor="sw",
                                       text=f"R : {self.env.reward[row][col]:.1f}",
                                       font=("Helvetica", 9), tags="reward")
        canvas.create_rectangle(25, 25, 75, 75, fill=AGENT_COLOR, outline="", tags="agent")
        canvas.pack()
        return canvas

    def _build_buttons(self, commands):
        bar = tk.Frame(self)
        bar.pack(fill="x", pady=8)
        buttons = {}
        for label, command in commands.items():
            buttons[label] = tk.Button(bar, text=label, width=10, command=command)
            buttons[label].pack(side="left", expand=True)
        return buttons

    def place_agent(self, state):
        self.agent_state = list(state)
        x, y = state[1] * UNIT, state[0] * UNIT
        self.canvas.coords("agent", x + 25, y + 25, x + 75, y + 75)
        self.canvas.tag_raise("agent")

    def print_value_table(self, value_table):
        """Write each cell's value (rounded for display only) in its top-left corner."""
        self.canvas.delete("value")
        for row in range(HEIGHT):
            for col in range(WIDTH):
                self.canvas.create_text(col * UNIT + 5, row * UNIT + 5, anchor="nw",
                                        text=f"{value_table[row][col]:.2f}",
                                        font=("Helvetica", 10, "bold"), tags="value")

    def draw_policy(self, policy_table):
        """A small arrow for every action that the policy takes with probability > 0."""
        self.canvas.delete("arrow")
        for row in range(HEIGHT):
            for col in range(WIDTH):
                for action, prob in enumerate(policy_table[row][col]):
                    if prob > 0:
                        self._draw_arrow(row, col, action)
        self.canvas.tag_raise("agent")

    def _draw_arrow(self, row, col, action):
        cx, cy = col * UNIT + UNIT / 2, row * UNIT + UNIT / 2
        drow, dcol = ACTIONS[action]
        self.canvas.create_line(cx + dcol * ARROW_FROM, cy + drow * ARROW_FROM,
                                cx + dcol * ARROW_TO, cy + drow * ARROW_TO,
                                arrow=tk.LAST, width=2, tags=("arrow", f"arrow-{row}-{col}-{action}"))


# ---- the text and pictures of a solution: what the headless run prints and --record saves ----
ARROWS = "↑↓←→"


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
    if record is not None:      # where the GIF cannot be written (a folder in the way): one line, exit 1
        cells = [[col, row] for row, col in path]                   # the picture takes [x, y]
        frames = grid_animation(cells, GOAL[::-1], [[cell[::-1] for cell in TRIANGLES]] * len(cells))
        try_save(record.name, record.parent, lambda: write_gif(record, frames, seconds_per_frame=0.1), final=True)


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


# ---- the window's life: open it where one can open, close it on Ctrl-C or kill ----
def open_window(agent):
    """The book's window for `agent`, or None after a one-line note where no window can open."""
    if tk is None:
        print("this Python has no tkinter: running headless (see the README's troubleshooting)")
        return None
    try:
        return GraphicDisplay(agent)
    except tk.TclError as error:            # DISPLAY names a screen, but none answers there
        print(f"cannot open a window ({error}): running headless")
        return None


# Tk's mainloop waits inside Tcl, where Python's signal handlers do not run until some event comes: a timer
# every 100 ms lets them run, and closes the window once Ctrl-C or kill has raised the stop flag.
def close_on_stop(window, stop, every_ms=100):
    if stop.requested:
        window.destroy()
    else:
        window.after(every_ms, close_on_stop, window, stop, every_ms)
