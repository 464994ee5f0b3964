"""DQN on CartPole (the book's CartPole chapter: 2-cartpole/1-dqn/cartpole_dqn.py).

Deep Q-network (Mnih et al., 2015). A network Q(s, a) learns from random mini-batches of a replay memory,
toward targets computed by a copy of itself that is refreshed once per episode (the target network):

    y    = r + gamma * max_a' Q_target(s', a')        (y = r when s' ends the episode by a real failure)
    loss = mean over the mini-batch of (y - Q(s, a))^2

The book's shaping: a real failure (the pole falls or the cart leaves the track) earns -100 instead of +1.
Gymnasium stops every episode at 500 steps. That time limit is not a failure: it is neither punished nor
treated as terminal (the target still bootstraps from s'), and the score is the true episode length.
Stop rule: when the mean score of the last 10 episodes exceeds 490, save the weights and stop.
Ctrl-C (or `kill`) stops training between two steps: the weights and the graph are saved once, and the
script exits with status 130; while watching (--play) it stops and prints the mean of the games so far.

Speed: the agent acts with a numpy forward pass on the current weights (a few microseconds, against about
0.3 ms for a call into TensorFlow); one compiled training step per environment step returns the updated
weights for it. The replay memory is one preallocated numpy array.

    python cartpole_dqn.py                      # train (headless; --render shows the window)
    python cartpole_dqn.py --play --render      # watch the shipped trained agent, greedily
    tensorboard --logdir summary                # score, mean of the last 10, epsilon, loss per episode

Artefacts (under --save-dir, default this folder): save_model/cartpole_dqn.weights.h5 (Keras 3 weights),
save_graph/cartpole_dqn.png, summary/cartpole_dqn/ (TensorBoard). Watching (--play) writes nothing.
"""
import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")      # Keras 3 on TensorFlow; set before importing keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# --render: an OpenGL-accelerated SDL window segfaulted beside TensorFlow (Mesa, Linux); the small
# CartPole window needs no acceleration.
os.environ.setdefault("SDL_FRAMEBUFFER_ACCELERATION", "0")

import gymnasium as gym  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = Path(__file__).resolve().parent                    # every path resolves against this folder
NAME = "cartpole_dqn"
TRAINED = HERE / "save_model" / f"{NAME}_trained.weights.h5"     # the shipped weights, played by --play
STATE_SIZE = 4                 # CartPole-v1: cart position, cart velocity, pole angle, pole angular velocity
ACTION_SIZE = 2                # push the cart left or right

# ---- hyperparameters (the book's values) ----
DISCOUNT_FACTOR = 0.99
LEARNING_RATE = 0.001          # Adam
EPSILON_START = 1.0            # epsilon-greedy exploration...
EPSILON_DECAY = 0.999          # ...multiplied by this after every training step...
EPSILON_MIN = 0.01             # ...down to this floor
BATCH_SIZE = 64
TRAIN_START = 1000             # transitions in memory before the first training step
MEMORY_SIZE = 2000             # the replay memory keeps the most recent transitions
EPISODES = 300
FAILURE_REWARD = -100.0        # reward of a real failure (instead of +1)
SOLVED_SCORE = 490             # stop rule: the mean of the last SOLVED_WINDOW scores exceeds this
SOLVED_WINDOW = 10
PLAY_EPISODES = 10             # default number of games for --play


# The book's reward shaping: a real failure costs FAILURE_REWARD; a time-limit stop is an ordinary step.
def shape_reward(reward, terminated):
    return FAILURE_REWARD if terminated else float(reward)


# ---- the network: 4 -> Dense(24, relu) -> Dense(24, relu) -> Dense(2, linear), he_uniform ----
def q_values_numpy(weights, states):
    """The network's forward pass in numpy (same maths as model(states)); used to act without TensorFlow."""
    w1, b1, w2, b2, w3, b3 = weights
    hidden = np.maximum(states @ w1 + b1, 0.0)
    hidden = np.maximum(hidden @ w2 + b2, 0.0)
    return hidden @ w3 + b3


class ReplayMemory:
    """A ring buffer of the last `capacity` transitions, one float32 row each:

        state (4) | action | reward | next_state (4) | done      (done = 1.0 only for a real failure)

    A mini-batch is then one fancy-index and one tensor; once full, a new row overwrites the oldest.
    """
    def __init__(self, capacity, state_size):
        self.capacity = capacity
        self.state_size = state_size
        self.rows = np.zeros((capacity, 2 * state_size + 3), dtype=np.float32)
        self.size = 0           # rows in use
        self.next_index = 0     # where the next transition goes

    def append(self, state, action, reward, next_state, done):
        n = self.state_size
        row = self.rows[self.next_index]
        row[:n] = state
        row[n] = action
        row[n + 1] = reward
        row[n + 2:2 * n + 2] = next_state
        row[2 * n + 2] = done
        self.next_index = (self.next_index + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    # Random rows without replacement, like the book's random.sample(memory, batch_size).
    def sample(self, batch_size):
        return self.rows[random.sample(range(self.size), batch_size)]

    def __len__(self):
        return self.size


def split_batch(batch, state_size):
    """Columns of a batch of ReplayMemory rows: states, actions, rewards, next_states, dones."""
    n = state_size
    return (batch[:, :n], tf.cast(batch[:, n], tf.int32), batch[:, n + 1],
            batch[:, n + 2:2 * n + 2], batch[:, 2 * n + 2])


class DQNAgent:
    def __init__(self, state_size, action_size):
        self.state_size = state_size
        self.action_size = action_size

        self.discount_factor = DISCOUNT_FACTOR
        self.learning_rate = LEARNING_RATE
        self.epsilon = EPSILON_START
        self.epsilon_decay = EPSILON_DECAY
        self.epsilon_min = EPSILON_MIN
        self.batch_size = BATCH_SIZE
        self.train_start = TRAIN_START

        self.memory = ReplayMemory(MEMORY_SIZE, state_size)
        self.model = self.build_model()
        self.target_model = self.build_model()
        self.optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate)
        self.optimizer.build(self.model.trainable_variables)
        # Traced once for the fixed batch shape; calling the concrete function directly skips tf.function's
        # argument matching (about 0.1 ms of a 0.5 ms step).
        row_size = 2 * state_size + 3
        self.train_step = tf.function(self._train_step).get_concrete_function(
            tf.TensorSpec([self.batch_size, row_size], tf.float32))
        self.weights = self.model.get_weights()       # numpy copy of the online weights, for get_action
        self.update_target_model()

    # Q(s, .) for every action: two hidden layers of 24 ReLU units, one linear output per action.
    def build_model(self):
        return keras.Sequential([
            keras.Input(shape=(self.state_size,)),
            keras.layers.Dense(24, activation="relu", kernel_initializer="he_uniform"),
            keras.layers.Dense(24, activation="relu", kernel_initializer="he_uniform"),
            keras.layers.Dense(self.action_size, activation="linear", kernel_initializer="he_uniform"),
        ])

    # Hard update: target <- online. Called at the start and at the end of every episode.
    def update_target_model(self):
        self.target_model.set_weights(self.model.get_weights())

    # Epsilon-greedy: a random action with probability epsilon, else argmax_a Q(s, a).
    def get_action(self, state):
        if np.random.rand() <= self.epsilon:
            return random.randrange(self.action_size)
        return int(np.argmax(q_values_numpy(self.weights, state)))

    # Store one transition <s, a, r, s', done> in the replay memory.
    def append_sample(self, state, action, reward, next_state, done):
        self.memory.append(state, action, reward, next_state, done)

    # y = r + gamma * max_a' Q_target(s', a'), and y = r where done (a real failure: nothing follows).
    def compute_targets(self, rewards, next_states, dones):
        next_q = self.target_model(next_states, training=False)
        return rewards + (1.0 - dones) * self.discount_factor * tf.reduce_max(next_q, axis=1)

    # One gradient step on a random mini-batch; epsilon decays once per step. Returns the loss.
    def train_model(self):
        if self.epsilon > self.epsilon_min:
            self.epsilon *= self.epsilon_decay
        batch = self.memory.sample(self.batch_size)
        loss, weights = self.train_step(tf.constant(batch))
        self.weights = [w.numpy() for w in weights]
        return float(loss)

    # The compiled step (see __init__): returns the loss and the new online weights, for get_action.
    def _train_step(self, batch):
        states, actions, rewards, next_states, dones = split_batch(batch, self.state_size)
        targets = self.compute_targets(rewards, next_states, dones)
        with tf.GradientTape() as tape:
            q_values = self.model(states, training=True)
            q_taken = tf.reduce_sum(q_values * tf.one_hot(actions, self.action_size), axis=1)
            # The book's MSE ran over both outputs, the untaken action's target being its own prediction;
            # that is half this loss, and Adam does not care about the factor.
            loss = tf.reduce_mean(tf.square(targets - q_taken))
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return loss, [tf.identity(variable) for variable in self.model.trainable_variables]

    # Greedy action (no exploration), for --play.
    def get_greedy_action(self, state):
        return int(np.argmax(q_values_numpy(self.weights, state)))

    def load(self, path):
        load_weights(self.model, path, f"train one with: python {Path(__file__).name}")
        self.weights = self.model.get_weights()
        self.update_target_model()


# CartPole-v1; with --render the gymnasium window, or a one-line note and headless if it cannot open.
def make_env(render, record=False):
    if record:                            # --record draws every frame off-screen; no window then
        if render:
            print("recording: the frames are drawn off-screen, so no window opens")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")     # pygame draws in memory: no screen, no sound
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        return gym.make("CartPole-v1", render_mode="rgb_array")
    if render and not display_available():
        print("no display found: running headless (pass --render on a machine with a display)")
        render = False
    if render:
        env = gym.make("CartPole-v1", render_mode="human")
        try:
            env.reset()                   # opens the window (needs pygame and a display)
            return env
        except Exception as error:
            env.close()
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"cannot open the CartPole window ({reason}): running headless")
    return gym.make("CartPole-v1")


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


def half_size(frame):
    """An H×W×3 frame at half its height and width, each pixel the mean of four (thin lines stay visible)."""
    frame = frame[:frame.shape[0] // 2 * 2, :frame.shape[1] // 2 * 2].astype(np.uint16)
    return ((frame[0::2, 0::2] + frame[1::2, 0::2] + frame[0::2, 1::2] + frame[1::2, 1::2]) // 4).astype(np.uint8)


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


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


# ---- the command line: arguments, then training or watching ----
def parse_args(argv=None):
    hyperparameters = (f"book hyperparameters: gamma {DISCOUNT_FACTOR}, Adam lr {LEARNING_RATE}, "
                       f"epsilon {EPSILON_START} x{EPSILON_DECAY} per training step (floor {EPSILON_MIN}), "
                       f"replay memory {MEMORY_SIZE}, batch {BATCH_SIZE}, training starts at {TRAIN_START} "
                       f"samples, target network copied every episode, failure reward {FAILURE_REWARD:g}, "
                       f"stop when the mean of the last {SOLVED_WINDOW} scores > {SOLVED_SCORE}.")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=hyperparameters,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--episodes", type=positive_int, default=None, metavar="N",
                        help=f"training episodes, or games to play with --play (None: {EPISODES} to train, "
                             f"{PLAY_EPISODES} to play)")
    parser.add_argument("--seed", type=int, default=None, metavar="N",
                        help="random seed (None: a different run each time)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="show the gymnasium window (needs pygame and a display; slows training to 50 fps)")
    parser.add_argument("--save-dir", type=Path, default=HERE, metavar="DIR",
                        help="artefacts go to DIR/save_model, DIR/save_graph, DIR/summary")
    parser.add_argument("--load", type=Path, default=None, metavar="PATH",
                        help="start from these weights (training then explores with epsilon "
                             f"{EPSILON_MIN}); with --play, the weights to play (None: train from scratch; "
                             f"--play plays save_model/{TRAINED.name})")
    parser.add_argument("--play", action="store_true",
                        help="play greedily without training, with --load or the shipped weights; writes nothing")
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif",
                        help="with --play: save the episodes played as an animated GIF (no window needed)")
    args = parser.parse_args(argv)
    if args.record is not None and not args.play:
        parser.error("argument --record: records what --play plays; add --play")
    return args


# ---- playing: the trained network, greedily (argmax Q), no learning ----
# Returns the scores of the games played to the end (Ctrl-C or kill stops between two steps).
def play(env, agent, episodes, seed, stop, frames=None):
    scores = []
    for e in range(1, episodes + 1):
        state, _ = env.reset(seed=seed if e == 1 else None)
        score, done = 0, False
        if frames is not None:
            frames.append(half_size(env.render()))          # 300 x 200 pixels
        while not done:
            if stop.requested:
                return scores
            state, reward, terminated, truncated, _ = env.step(agent.get_greedy_action(state))
            score += reward
            done = terminated or truncated
            if frames is not None:
                frames.append(half_size(env.render()))
        scores.append(score)
        print(f"episode: {e} | score: {score:.1f}")
    return scores


# ---- training loop ----
def main(argv=None):
    args = parse_args(argv)
    stop = StopFlag()                           # from here on, Ctrl-C and kill only raise this flag
    if args.seed is not None:
        random.seed(args.seed)
        np.random.seed(args.seed)
        keras.utils.set_random_seed(args.seed)
    agent = DQNAgent(STATE_SIZE, ACTION_SIZE)

    if args.play:
        agent.load(args.load or TRAINED)
        if args.record is not None:
            ensure_writable(args.record.parent.resolve())
        env = make_env(args.render, args.record is not None)
        frames = None if args.record is None else []
        scores = play(env, agent, args.episodes or PLAY_EPISODES, args.seed, stop, frames)
        env.close()
        if frames:
            write_gif(args.record, frames, seconds_per_frame=0.02)     # CartPole runs at 50 steps a second
        if stop.requested:
            print("interrupted")
        if scores:
            print(f"mean score: {np.mean(scores):.1f} over {len(scores)} episodes")
        if stop.requested:
            sys.exit(130)
        return

    if args.load:
        agent.load(args.load)
        agent.epsilon = agent.epsilon_min         # the loaded network already plays: explore little
        print(f"loaded {args.load}; epsilon starts at {agent.epsilon}")
    env = make_env(args.render)
    if stop.requested:
        env.close()
        print("interrupted before training started: nothing saved", file=sys.stderr)
        sys.exit(130)
    save_dir = args.save_dir.resolve()
    for folder in ("save_model", "save_graph", "summary"):
        ensure_writable(save_dir / folder)
    weights_path = save_dir / "save_model" / f"{NAME}.weights.h5"
    graph_path = save_dir / "save_graph" / f"{NAME}.png"
    writer = tf.summary.create_file_writer(str(save_dir / "summary" / NAME))
    episodes = args.episodes or EPISODES
    scores, total_steps, solved = [], 0, False

    def draw_graph():
        save_graph(graph_path, range(1, len(scores) + 1), scores, "episode", "CartPole DQN")

    def save_all():
        atomic_write(weights_path, agent.model.save_weights)
        draw_graph()
        writer.flush()
        print(f"weights: {weights_path}\ngraph: {graph_path}\n"
              f"tensorboard: tensorboard --logdir {save_dir / 'summary'}")

    start = time.perf_counter()
    for e in range(1, episodes + 1):
        state, _ = env.reset(seed=args.seed if e == 1 else None)
        score, losses, done = 0, [], False
        while not (done or stop.requested):           # Ctrl-C or kill: stop between two steps
            action = agent.get_action(state)
            next_state, reward, terminated, truncated, _ = env.step(action)
            score += reward                           # the true episode length
            # Only a real failure ends the return; a 500-step time limit still bootstraps from s'.
            agent.append_sample(state, action, shape_reward(reward, terminated), next_state, terminated)
            if len(agent.memory) >= agent.train_start:
                losses.append(agent.train_model())
            state = next_state
            done = terminated or truncated
            total_steps += 1
        if not done:                                  # stopped in the middle of this episode
            break
        agent.update_target_model()                   # once per episode (the book's schedule)

        scores.append(score)
        mean_recent = float(np.mean(scores[-SOLVED_WINDOW:]))
        print(f"episode: {e} | score: {score:.1f} | mean of last {SOLVED_WINDOW}: {mean_recent:.1f} | "
              f"memory length: {len(agent.memory)} | epsilon: {agent.epsilon:.3f}")
        log_scalars(writer, e, score=score, mean_score_last_10=mean_recent, epsilon=agent.epsilon,
                    average_loss=float(np.mean(losses)) if losses else 0.0)
        if e % 10 == 0:                               # a redraw costs more than a short episode
            draw_graph()
        if len(scores) >= SOLVED_WINDOW and mean_recent > SOLVED_SCORE:
            solved = True
            break
    env.close()
    if stop.requested:
        print(f"\ninterrupted at episode {len(scores) + 1}: saving")
        save_all()
        sys.exit(130)

    seconds = time.perf_counter() - start
    if solved:
        print(f"solved at episode {len(scores)} ({total_steps} env steps, {seconds:.1f} s of training)")
    else:
        print(f"not solved in {episodes} episodes ({total_steps} env steps, {seconds:.1f} s of training)")
    save_all()


if __name__ == "__main__":
    main()
