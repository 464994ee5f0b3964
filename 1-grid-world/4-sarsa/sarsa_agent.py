"""SARSA on the grid world (파이썬과 케라스로 배우는 강화학습, 4장 그리드월드와 큐러닝: 살사).

The agent learns an action-value table Q(s, a) online, one update after every step, from the five
things that give the method its name, (s, a, r, s', a'), where a' is the action it REALLY takes next:

    Q(s, a) <- Q(s, a) + alpha * (r + gamma * Q(s', a') - Q(s, a))
    (the target is r alone when s' ends the episode: a terminal state is worth 0)

It acts epsilon-greedily on Q (ties among the best actions broken at random), so it learns the value of
the policy it follows, exploration included: on-policy temporal-difference control.

With the book's values, 1000 episodes give a greedy path that reaches the circle without touching a
triangle in every seed tried (50 + 10), in the shortest 6 moves in about 9 seeds of 10; in the others
it takes an 8-move detour that more episodes do not quickly undo, because alpha = 0.01 learns slowly
in the cells that only exploration visits (measured with benchmarks/grid_tabular.py).

    python sarsa_agent.py                  # watch it learn (headless when there is no display)
    python sarsa_agent.py --no-render --seed 1

At the end Q is saved to save_model/sarsa_q_table.npy (under --save-dir): a numpy array of shape (5, 5, 4)
indexed [row, col, action], actions in the book's order up, down, left, right. `numpy.load` reads it.
Ctrl-C or `kill` stops the run between two steps; it saves Q the same way and exits with status 130.
"""
import argparse
import os
import random
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent      # every path resolves against this folder, not the cwd
sys.path.insert(0, str(HERE))               # this folder's environment.py
from environment import ACTIONS, GOAL, HEIGHT, RENDER_DELAY, START, TRIANGLES, WIDTH, Env  # noqa: E402

# ---- hyperparameters (the book's values) ----
EPISODES = 1000
LEARNING_RATE = 0.01      # alpha, the step size
DISCOUNT_FACTOR = 0.9     # gamma
EPSILON = 0.1             # probability of a random action


class SARSAgent:
    def __init__(self, actions, learning_rate=LEARNING_RATE, discount_factor=DISCOUNT_FACTOR,
                 epsilon=EPSILON):
        self.actions = actions
        self.learning_rate = learning_rate
        self.discount_factor = discount_factor
        self.epsilon = epsilon
        # Q(s, a) of every cell, indexed [row, col, action] = [y, x, action]; zeros, like the book
        self.q_table = np.zeros((HEIGHT, WIDTH, len(actions)))

    # Update Q(s, a) from one step (s, a, r, s', a'). Called after every step, once a' is chosen.
    def learn(self, state, action, reward, next_state, next_action, done):
        x, y = state
        next_x, next_y = next_state
        current_q = self.q_table[y, x, action]
        next_q = 0.0 if done else self.q_table[next_y, next_x, next_action]
        td_target = reward + self.discount_factor * next_q
        self.q_table[y, x, action] = current_q + self.learning_rate * (td_target - current_q)

    # Epsilon-greedy: a random action with probability epsilon, else a best one (ties broken at random,
    # so an untrained agent does not always walk into the same wall).
    def get_action(self, state):
        if random.random() < self.epsilon:
            return random.choice(self.actions)
        x, y = state
        return arg_max(self.q_table[y, x])


def arg_max(values):
    best = np.flatnonzero(values == values.max())
    return int(random.choice(best))


# Follow the greedy action (the first best one on ties) from the start until the episode would end or
# a cell repeats (a deterministic policy that comes back to a cell loops for ever).
def greedy_path(q_table, env):
    state, path = list(START), [list(START)]
    while not env.reward_and_done(state)[1]:
        x, y = state
        state = env.state_after_action(state, int(np.argmax(q_table[y, x])))
        if state in path:
            return path + [state], "loops"
        path.append(state)
    ending = "reaches the circle" if env.reward_and_done(state)[0] > 0 else "ends on a triangle"
    return path, f"{ending} in {len(path) - 1} moves"


# The world, with its window when asked. DISPLAY can name a screen that does not answer, and a Python can
# lack Tk: then the run goes on headless after a one-line note.
def make_env(render, delay):
    if render:
        try:
            return Env(render=True, delay=delay)
        except RuntimeError as error:
            print(f"{error}: running headless")
    return Env()


# ---- plumbing: the same text in every chapter that has it (tests/test_plumbing.py checks); safe to skip ----
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


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not 0.0 <= value < float("inf"):                    # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def probability(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:                            # also rejects nan
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


# ---- the command line and the training loop ----
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="SARSA on the 5x5 grid world (the book's chapter 4).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--episodes", type=positive_int, default=EPISODES, help="episodes to train")
    parser.add_argument("--seed", type=int, default=None, help="random seed; None: a different run every time")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=None,
                        help="show the grid window; None: when a display is available")
    parser.add_argument("--render-delay", type=non_negative, default=RENDER_DELAY,
                        help="seconds per step while rendering")
    parser.add_argument("--save-dir", type=Path, default=HERE, help="the table goes to SAVE_DIR/save_model")
    parser.add_argument("--learning-rate", type=probability, default=LEARNING_RATE, help="step size alpha")
    parser.add_argument("--discount-factor", type=probability, default=DISCOUNT_FACTOR, help="gamma")
    parser.add_argument("--epsilon", type=probability, default=EPSILON, help="probability of a random action")
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif",
                        help="after the run, save the greedy path from the start as an animated GIF (no window needed)")
    return parser.parse_args(argv)


# The book's training loop. The next action is chosen BEFORE learning, and is the one taken next.
# Between two steps it looks at the stop flag (Ctrl-C or kill) and returns early.
def train(env, agent, episodes, stop=None, quiet=False):
    for episode in range(episodes):
        state = env.reset()
        action = agent.get_action(state)
        score, steps, done = 0, 0, False
        while not done:
            if stop and stop.requested:
                return
            next_state, reward, done = env.step(action)
            next_action = None if done else agent.get_action(next_state)
            agent.learn(state, action, reward, next_state, next_action, done)
            state, action = next_state, next_action
            score += reward
            steps += 1
            env.print_value_all(agent.q_table)     # does nothing headless
        if not quiet:
            print(f"episode: {episode} | score: {score:.1f} | steps: {steps}")


def main(argv=None):
    args = parse_args(argv)
    stop = StopFlag()                           # from here on Ctrl-C and kill only raise stop.requested
    save_path = args.save_dir / "save_model" / "sarsa_q_table.npy"
    render = args.render is not False
    if render and not display_available():     # default or --render, but no screen
        print("no display found: running headless (pass --render on a machine with a display)")
        render = False
    ensure_writable(save_path.parent)
    if args.record is not None:
        ensure_writable(args.record.parent.resolve())

    if args.seed is not None:                   # seeding: one visible block
        random.seed(args.seed)
        np.random.seed(args.seed)

    env = make_env(render, args.render_delay)
    agent = SARSAgent(actions=list(range(env.n_actions)), learning_rate=args.learning_rate,
                      discount_factor=args.discount_factor, epsilon=args.epsilon)
    if stop.requested:
        env.close()
        print("interrupted before training started: nothing saved", file=sys.stderr)
        sys.exit(130)

    train(env, agent, args.episodes, stop)
    env.close()
    if stop.requested:
        print("interrupted: saving what has been learned so far")
    atomic_write(save_path, lambda tmp: np.save(tmp, agent.q_table))
    print(f"Q table (row, col, action: {', '.join(ACTIONS)}) saved to {save_path}")
    if stop.requested:
        sys.exit(130)
    path, ending = greedy_path(agent.q_table, env)
    print("greedy path from the start (row, col): "
          + " -> ".join(f"({y}, {x})" for x, y in path) + f": {ending}")
    if args.record is not None:
        write_gif(args.record, grid_animation(path, GOAL, [TRIANGLES] * len(path)), seconds_per_frame=0.1)


if __name__ == "__main__":
    main()
