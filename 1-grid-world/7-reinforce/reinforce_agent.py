"""REINFORCE on the moving-obstacle grid world (파이썬과 케라스로 배우는 강화학습, 5장 근사함수: REINFORCE).

Instead of learning values and acting on them, the agent learns its policy directly: a network reads the
15-number state and outputs pi(a|s), the probabilities of the 5 actions, and the agent samples its action
from them. After each episode it computes the return of every step backwards from the end,

    G_T = r_T,    G_t = r_t + gamma * G_{t+1}

normalises the returns of the episode (mean 0, standard deviation 1; a small epsilon guards a constant
episode), and takes one Adam step on the policy-gradient loss

    L = - sum_t log pi(a_t | s_t) * G_t

so that actions followed by better-than-average returns become more likely. Every step costs -0.1 (in this
chapter's environment.py), so shorter routes to the goal score higher.

Decisions (differences from the book's 2017 code; this folder's README.md lists them all):
  - Returns are normalised with (G - mean) / (std + 1e-8): the original divided by the bare std.
  - environment.py: the obstacles' clock starts again with every episode, and episodes stop after
    --max-steps steps (a time limit: the truncated episode is learned from like any other).
  - The score graph is saved with the weights (every 100 episodes, at the end, on Ctrl-C) instead of after
    every episode: one PNG costs more time than a whole episode here.
  - Ctrl-C (or `kill`) stops training between two steps: the weights and the graph are saved once, and the
    script exits with status 130. While watching (--play) it stops and prints the mean of the games so far.

    python reinforce_agent.py                         # train 2500 episodes (window if there is a display)
    python reinforce_agent.py --no-render --seed 1    # headless, reproducible
    python reinforce_agent.py --play                  # watch the shipped trained agent, greedily (argmax)
    tensorboard --logdir summary                      # score, steps, loss per episode

Artefacts (under --save-dir, default this folder): save_model/reinforce.weights.h5 (Keras 3 weights),
save_graph/reinforce.png, summary/reinforce/ (TensorBoard). Watching (--play) writes nothing.
"""
import argparse
import os
import random
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")      # Keras 3 on TensorFlow; set before importing keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")        # no TensorFlow start-up chatter
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = Path(__file__).resolve().parent      # every path resolves against this folder, not the cwd
sys.path.insert(0, str(HERE))               # this folder's environment.py
from environment import ACTIONS, GOAL, MAX_STEPS, RENDER_DELAY, STATE_SIZE, Env  # noqa: E402

NAME = "reinforce"
TRAINED = HERE / "save_model" / f"{NAME}_trained.weights.h5"     # the shipped weights, played by --play

# ---- hyperparameters (the book's values) ----
EPISODES = 2500
DISCOUNT_FACTOR = 0.99    # gamma
LEARNING_RATE = 0.001     # Adam
NORMALIZE_EPSILON = 1e-8  # added to the std when normalising the returns
SAVE_EVERY = 100          # episodes between saves of the weights and the graph
PLAY_EPISODES = 20        # default number of episodes for --play


# ---- the network: 15 numbers in, a probability for each action out ----
def build_model(state_size, action_size):
    return keras.Sequential([
        keras.Input(shape=(state_size,)),
        keras.layers.Dense(24, activation="relu"),
        keras.layers.Dense(24, activation="relu"),
        keras.layers.Dense(action_size, activation="softmax"),
    ])


# Returns of one episode scaled to mean 0 and standard deviation 1: steps with an above-average return get
# a positive weight, the others a negative one, whatever the scale of the rewards.
def normalize_returns(returns, epsilon=NORMALIZE_EPSILON):
    returns = np.asarray(returns, dtype=np.float32)
    return (returns - returns.mean()) / (returns.std() + epsilon)


class ReinforceAgent:
    def __init__(self, state_size, action_size, discount_factor=DISCOUNT_FACTOR,
                 learning_rate=LEARNING_RATE):
        self.state_size = state_size
        self.action_size = action_size
        # hyperparameters
        self.discount_factor = discount_factor
        self.learning_rate = learning_rate

        self.model = build_model(state_size, action_size)
        self.optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        self.states, self.actions, self.rewards = [], [], []     # the episode so far
        self.refresh_weights()

    # Sample an action from pi(.|state). Called once per step.
    def get_action(self, state):
        return int(np.random.choice(self.action_size, p=self.policy(state)))

    # pi(.|state) computed with numpy on a copy of the current weights: a few microseconds, where a
    # compiled Keras call costs about 350 and model.predict about 45000. Same numbers as self.model(state).
    def policy(self, state):
        w1, b1, w2, b2, w3, b3 = self.weights
        hidden = np.maximum(state @ w1 + b1, 0.0)
        hidden = np.maximum(hidden @ w2 + b2, 0.0)
        logits = (hidden @ w3 + b3).astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        return probabilities / probabilities.sum()

    # The numpy copy of the network's weights that policy uses (after building, loading or training).
    def refresh_weights(self):
        self.weights = [np.array(weight) for weight in self.model.get_weights()]

    # The return of every step, computed backwards from the end: G_t = r_t + gamma * G_{t+1}.
    def discount_rewards(self, rewards):
        returns = np.zeros(len(rewards), dtype=np.float32)
        running = 0.0
        for t in reversed(range(len(rewards))):
            running = rewards[t] + self.discount_factor * running
            returns[t] = running
        return returns

    # Remember one step of the episode. Called after every step.
    def append_sample(self, state, action, reward):
        self.states.append(state)
        self.actions.append(action)
        self.rewards.append(reward)

    # One policy-gradient step on the whole episode, then forget it. Called at the end of every episode.
    # Returns the loss (measured before the update).
    def train_model(self):
        returns = normalize_returns(self.discount_rewards(self.rewards))
        loss = self._train_step(tf.constant(np.array(self.states), dtype=tf.float32),
                                tf.constant(self.actions, dtype=tf.int32), tf.constant(returns))
        self.states, self.actions, self.rewards = [], [], []
        self.refresh_weights()
        return float(loss)

    # The compiled part. Episodes have different lengths: the signature lets one graph take them all.
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None], tf.float32)])
    def _train_step(self, states, actions, returns):
        with tf.GradientTape() as tape:
            policies = self.model(states, training=True)
            chosen = tf.gather(policies, actions, batch_dims=1)        # pi(a_t | s_t)
            loss = -tf.reduce_sum(tf.math.log(chosen + 1e-10) * returns)     # 1e-10: never log(0)
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return loss


# The world, with its window when asked and possible; otherwise headless, with a one-line note.
def make_env(render, delay, max_steps):
    if render and not display_available():
        print("no display found: running headless (pass --render on a machine with a display)")
        render = False
    try:
        return Env(render=render, delay=delay, max_steps=max_steps)
    except Exception as error:                # tkinter.TclError (a display that refuses), or no Tk at all
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"cannot open the grid window ({reason}): running headless")
        return Env(max_steps=max_steps)


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


def load_weights(model, path, how_to_make):
    """Load Keras weights, or exit with one line naming the file and how to make one."""
    try:
        model.load_weights(path)
    except Exception as error:            # missing, truncated, wrong architecture
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        # A wrong architecture: Keras says "... for object <Conv2D ...>:" and the reason on the next line.
        reason = lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]
        reason = reason.split(" Target variable:")[0]          # not the dump of the variable's values
        sys.exit(f"error: cannot load weights from {path} ({reason}); {how_to_make}")


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


def log_scalars(writer, step, **scalars):
    """TensorBoard scalars, one tf.summary.scalar each (view them: tensorboard --logdir <save dir>/summary)."""
    with writer.as_default(step=step):
        for name, value in scalars.items():
            tf.summary.scalar(name, value)


def save_graph(path, x, scores, xlabel, title, window=100):
    """The scores (dots) and their running mean over the last `window` (line), as a PNG written atomically.
    matplotlib's Agg backend draws without a window."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x, scores = np.asarray(x, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.plot(x, scores, ".", markersize=2, alpha=0.5, label="score")
    window = min(window, len(scores))
    if window > 1:
        mean = np.convolve(scores, np.ones(window) / window, mode="valid")
        axes.plot(x[window - 1:], mean, "r-", label=f"mean of the last {window}")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("score")
    axes.set_title(title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=80))
    plt.close(figure)


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


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not 0.0 < value < float("inf"):                     # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text}")
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


# ---- the command line: arguments, then training or watching ----
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="REINFORCE on the moving-obstacle grid world (the book's chapter 5).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--episodes", type=positive_int, default=None, metavar="N",
                        help=f"episodes to train, or to play with --play (None: {EPISODES} to train, "
                             f"{PLAY_EPISODES} to play)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="random seed (None: a different run each time)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=None,
                        help="show the grid window (None: when a display is available)")
    parser.add_argument("--render-delay", type=non_negative, default=RENDER_DELAY, metavar="SECONDS",
                        help="seconds per step while rendering")
    parser.add_argument("--save-dir", type=Path, default=HERE, metavar="DIR",
                        help="artefacts go to DIR/save_model, DIR/save_graph, DIR/summary")
    parser.add_argument("--load", type=Path, default=None, metavar="PATH",
                        help="start from these weights (training; Adam starts afresh) or play them (--play) "
                             f"(None: train from scratch; --play plays save_model/{TRAINED.name})")
    parser.add_argument("--play", action="store_true",
                        help="no training: play greedily with --load or the shipped weights; writes nothing")
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif",
                        help="with --play: save the episodes played as an animated GIF (no window needed)")
    parser.add_argument("--max-steps", type=positive_int, default=MAX_STEPS, metavar="N",
                        help="episode cap in steps, a time limit, not a terminal state")
    parser.add_argument("--discount-factor", type=probability, default=DISCOUNT_FACTOR, help="gamma")
    parser.add_argument("--learning-rate", type=positive_float, default=LEARNING_RATE, help="Adam step size")
    args = parser.parse_args(argv)
    if args.record is not None and not args.play:
        parser.error("argument --record: records what --play plays; add --play")
    return args


# ---- playing: the trained policy, greedily (the most probable action), no learning ----
# The world has no randomness and greedy play none either, so every episode here is the same one.
# Returns the scores of the games played to the end and how many reached the goal.
def play(env, agent, episodes, stop, walk=None):
    scores, reached = [], 0
    for episode in range(1, episodes + 1):
        state = env.reset()
        score, done = 0.0, False
        remember(walk, env)
        while not (done or env.truncated):
            if stop.requested:                    # Ctrl-C or kill: stop between two steps
                return scores, reached
            state, reward, done = env.step(int(np.argmax(agent.policy(state))))
            score += reward
            remember(walk, env)
        scores.append(score)
        reached += done
        print(f"episode: {episode} | score: {score:.1f} | steps: {env.counter} | "
              f"{'goal reached' if done else 'step cap hit'}")
    return scores, reached


# --record: the agent's cell and the triangles' cells after every step, for grid_animation.
def remember(walk, env):
    if walk is not None:
        walk.append((list(env.agent), [[x, y] for x, y, _ in env.obstacles]))


# ---- training: the book's loop ----
# `scores` is filled in place, so that an interrupted run still has them to save. Returns when the episodes
# are done or, between two steps, when Ctrl-C or kill raised the stop flag.
def train(env, agent, episodes, scores, writer, save, stop):
    for episode in range(1, episodes + 1):
        state = env.reset()
        score, done = 0.0, False
        while not (done or env.truncated):
            if stop.requested:
                return
            action = agent.get_action(state)
            next_state, reward, done = env.step(action)
            agent.append_sample(state, action, reward)
            state = next_state
            score += reward
        loss = agent.train_model()
        scores.append(score)
        ending = "" if done else " | truncated"
        print(f"episode: {episode} | score: {score:.1f} | steps: {env.counter}{ending}")
        log_scalars(writer, episode, score=score, steps=env.counter, loss=loss)
        if episode % SAVE_EVERY == 0:
            save(scores)


def main(argv=None):
    args = parse_args(argv)
    stop = StopFlag()                           # from here on, Ctrl-C and kill only raise this flag
    if args.seed is not None:                   # seeding: one visible block
        random.seed(args.seed)
        np.random.seed(args.seed)
        keras.utils.set_random_seed(args.seed)

    agent = ReinforceAgent(STATE_SIZE, len(ACTIONS), discount_factor=args.discount_factor,
                           learning_rate=args.learning_rate)
    if args.play:
        load_weights(agent.model, args.load or TRAINED, f"train with `python {Path(__file__).name}` first")
    elif args.load:
        load_weights(agent.model, args.load, "pass a file saved by this script")
    agent.refresh_weights()
    env = make_env(args.render is not False, args.render_delay, args.max_steps)

    if args.play:
        if args.record is not None:
            ensure_writable(args.record.parent.resolve())
        walk = None if args.record is None else []
        scores, reached = play(env, agent, args.episodes or PLAY_EPISODES, stop, walk)
        env.close()
        if walk:
            write_gif(args.record, grid_animation([cell for cell, _ in walk], GOAL, [shapes for _, shapes in walk],
                                                  per_move=2), seconds_per_frame=0.07)
        if stop.requested:
            print("interrupted")
        if scores:
            print(f"goal reached: {reached} of {len(scores)}")
            print(f"mean score: {np.mean(scores):.2f} over {len(scores)} episodes")
        if stop.requested:
            sys.exit(130)
        return

    if stop.requested:
        env.close()
        print("interrupted before training started: nothing saved", file=sys.stderr)
        sys.exit(130)
    model_dir, graph_dir = args.save_dir / "save_model", args.save_dir / "save_graph"
    weights_path, graph_path = model_dir / f"{NAME}.weights.h5", graph_dir / f"{NAME}.png"
    ensure_writable(model_dir)
    ensure_writable(graph_dir)
    writer = tf.summary.create_file_writer(str(args.save_dir / "summary" / NAME))
    with writer.as_default(step=0):
        tf.summary.text("hyperparameters",
                        "\n".join(f"    {key}: {value}" for key, value in sorted(vars(args).items())))

    def save(scores):
        atomic_write(weights_path, agent.model.save_weights)
        save_graph(graph_path, range(1, len(scores) + 1), scores, "episode",
                   "REINFORCE on the moving-obstacle grid world")
        writer.flush()

    scores = []
    train(env, agent, args.episodes or EPISODES, scores, writer, save, stop)
    env.close()
    save(scores)
    if stop.requested:
        print(f"interrupted: weights saved to {weights_path}, graph to {graph_path}")
        sys.exit(130)
    print(f"weights saved to {weights_path}")
    print(f"graph saved to {graph_path}")
    print(f"TensorBoard: tensorboard --logdir {args.save_dir / 'summary'}")


if __name__ == "__main__":
    main()
