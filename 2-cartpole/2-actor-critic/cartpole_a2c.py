"""Advantage actor-critic (A2C) on CartPole (the book's CartPole chapter: 2-cartpole/2-actor-critic).

Two networks learn online, one update after every environment step (TD(0)):
the critic V(s) estimates how good a state is, and the actor pi(a|s) is the policy it criticises.

    delta        = r + gamma * V(s') - V(s)       (delta = r - V(s) when s' ends the episode by a failure)
    actor loss   = -log pi(a|s) * delta           (delta, the advantage, is a constant here)
    critic loss  = delta^2                        (toward the target r + gamma * V(s'), also a constant)

The book's shaping: a real failure (the pole falls or the cart leaves the track) earns -100 instead of +1.
Gymnasium stops every episode at 500 steps. That time limit is not a failure: it is neither punished nor
treated as terminal (the target still bootstraps from V(s')), and the score is the true episode length.
Stop rule: when the mean score of the last 10 episodes exceeds 490, save the weights and stop.
Ctrl-C (or `kill`) stops training between two steps: the weights and the graph are saved once, and the
script exits with status 130; while watching (--play) it stops and prints the mean of the games so far.

Speed: actions are sampled from a numpy forward pass of the actor on its current weights; the compiled
training step updates both networks and returns the actor's new weights for it.

    python cartpole_a2c.py                      # train (headless; --render shows the window)
    python cartpole_a2c.py --play --render      # watch the shipped trained agent (the most probable action)
    tensorboard --logdir summary                # score, mean of the last 10, both losses per episode

Artefacts (under --save-dir, default this folder): save_model/cartpole_a2c.weights.h5 (Keras 3 weights of
both networks), save_graph/cartpole_a2c.png, summary/cartpole_a2c/ (TensorBoard). --play writes nothing.
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
NAME = "cartpole_a2c"
TRAINED = HERE / "save_model" / f"{NAME}_trained.weights.h5"     # the shipped weights, played by --play
STATE_SIZE = 4                 # CartPole-v1: cart position, cart velocity, pole angle, pole angular velocity
ACTION_SIZE = 2                # push the cart left or right

# ---- hyperparameters (the book's values) ----
DISCOUNT_FACTOR = 0.99
ACTOR_LEARNING_RATE = 0.001    # Adam
CRITIC_LEARNING_RATE = 0.005   # Adam
EPISODES = 1000
FAILURE_REWARD = -100.0        # reward of a real failure (instead of +1)
SOLVED_SCORE = 490             # stop rule: the mean of the last SOLVED_WINDOW scores exceeds this
SOLVED_WINDOW = 10
PLAY_EPISODES = 10             # default number of games for --play


# The book's reward shaping: a real failure costs FAILURE_REWARD; a time-limit stop is an ordinary step.
def shape_reward(reward, terminated):
    return FAILURE_REWARD if terminated else float(reward)


# ---- the networks: actor 4 -> Dense(24, relu) -> Dense(2, softmax);
#      critic 4 -> Dense(24, relu) -> Dense(24, relu) -> Dense(1, linear); all he_uniform ----
def policy_numpy(actor_weights, state):
    """The actor's forward pass in numpy (same maths as actor(state)); used to act without TensorFlow."""
    w1, b1, w2, b2 = actor_weights
    hidden = np.maximum(state @ w1 + b1, 0.0)
    logits = hidden @ w2 + b2
    exp = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return exp / np.sum(exp, axis=-1, keepdims=True)


def split_transitions(rows, state_size):
    """Columns of transition rows laid out as state | action | reward | next_state | done."""
    n = state_size
    return (rows[:, :n], tf.cast(rows[:, n], tf.int32), rows[:, n + 1],
            rows[:, n + 2:2 * n + 2], rows[:, 2 * n + 2])


class A2CAgent:
    def __init__(self, state_size, action_size):
        self.state_size = state_size
        self.action_size = action_size

        self.discount_factor = DISCOUNT_FACTOR
        self.actor_lr = ACTOR_LEARNING_RATE
        self.critic_lr = CRITIC_LEARNING_RATE

        self.actor = self.build_actor()
        self.critic = self.build_critic()
        # Both networks in one model, only so that they save and load as one weights file.
        inputs = keras.Input(shape=(state_size,))
        self.model = keras.Model(inputs, [self.actor(inputs), self.critic(inputs)])
        self.actor_optimizer = keras.optimizers.Adam(learning_rate=self.actor_lr)
        self.critic_optimizer = keras.optimizers.Adam(learning_rate=self.critic_lr)
        self.actor_optimizer.build(self.actor.trainable_variables)
        self.critic_optimizer.build(self.critic.trainable_variables)
        # One transition per step, as one float32 row: state | action | reward | next_state | done.
        self.transition = np.zeros((1, 2 * state_size + 3), dtype=np.float32)
        # Traced once; calling the concrete function directly skips tf.function's argument matching.
        self.train_step = tf.function(self._train_step).get_concrete_function(
            tf.TensorSpec(self.transition.shape, tf.float32))
        self.weights = self.actor.get_weights()   # numpy copy of the actor's weights, for get_action

    # The policy pi(a|s): one hidden layer of 24 ReLU units, softmax over the actions.
    def build_actor(self):
        return keras.Sequential([
            keras.Input(shape=(self.state_size,)),
            keras.layers.Dense(24, activation="relu", kernel_initializer="he_uniform"),
            keras.layers.Dense(self.action_size, activation="softmax", kernel_initializer="he_uniform"),
        ], name="actor")

    # The state value V(s): two hidden layers of 24 ReLU units, one linear output.
    def build_critic(self):
        return keras.Sequential([
            keras.Input(shape=(self.state_size,)),
            keras.layers.Dense(24, activation="relu", kernel_initializer="he_uniform"),
            keras.layers.Dense(24, activation="relu", kernel_initializer="he_uniform"),
            keras.layers.Dense(1, activation="linear", kernel_initializer="he_uniform"),
        ], name="critic")

    # Sample an action from pi(.|s).
    def get_action(self, state):
        policy = policy_numpy(self.weights, state).astype(np.float64)
        return int(np.random.choice(self.action_size, p=policy / policy.sum()))

    # target = r + gamma * V(s') (target = r where done, a real failure), advantage = target - V(s).
    def compute_targets(self, states, rewards, next_states, dones):
        values = self.critic(states, training=False)[:, 0]
        next_values = self.critic(next_states, training=False)[:, 0]
        targets = rewards + (1.0 - dones) * self.discount_factor * next_values
        return targets, targets - values

    # One online update of both networks from one transition. Returns (actor loss, critic loss).
    def train_model(self, state, action, reward, next_state, done):
        n = self.state_size
        row = self.transition[0]
        row[:n] = state
        row[n] = action
        row[n + 1] = reward
        row[n + 2:2 * n + 2] = next_state
        row[2 * n + 2] = done
        actor_loss, critic_loss, actor_weights = self.train_step(tf.constant(self.transition))
        self.weights = [w.numpy() for w in actor_weights]
        return float(actor_loss), float(critic_loss)

    # The compiled step (see __init__): returns both losses and the actor's new weights, for get_action.
    def _train_step(self, transitions):
        states, actions, rewards, next_states, dones = split_transitions(transitions, self.state_size)
        targets, _ = self.compute_targets(states, rewards, next_states, dones)
        with tf.GradientTape() as tape:
            values = self.critic(states, training=True)[:, 0]
            advantages = targets - values                                  # delta
            policy = self.actor(states, training=True)
            action_prob = tf.reduce_sum(policy * tf.one_hot(actions, self.action_size), axis=1)
            log_prob = tf.math.log(tf.clip_by_value(action_prob, 1e-7, 1.0))
            actor_loss = -tf.reduce_mean(log_prob * tf.stop_gradient(advantages))
            critic_loss = tf.reduce_mean(tf.square(advantages))
            # The actor loss does not depend on the critic's weights nor the critic loss on the actor's,
            # so one gradient of their sum gives each network its own gradient.
            total_loss = actor_loss + critic_loss
        actor_vars = self.actor.trainable_variables
        critic_vars = self.critic.trainable_variables
        gradients = tape.gradient(total_loss, actor_vars + critic_vars)
        self.actor_optimizer.apply_gradients(zip(gradients[:len(actor_vars)], actor_vars))
        self.critic_optimizer.apply_gradients(zip(gradients[len(actor_vars):], critic_vars))
        return actor_loss, critic_loss, [tf.identity(variable) for variable in actor_vars]

    # The most probable action (no sampling), for --play.
    def get_greedy_action(self, state):
        return int(np.argmax(policy_numpy(self.weights, state)))

    def load(self, path):
        load_weights(self.model, path, f"train one with: python {Path(__file__).name}")
        self.weights = self.actor.get_weights()


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
    hyperparameters = (f"book hyperparameters: gamma {DISCOUNT_FACTOR}, actor Adam lr {ACTOR_LEARNING_RATE}, "
                       f"critic Adam lr {CRITIC_LEARNING_RATE}, one update per step, failure reward "
                       f"{FAILURE_REWARD:g}, stop when the mean of the last {SOLVED_WINDOW} scores > "
                       f"{SOLVED_SCORE}.")
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
                        help="start training from these weights; with --play, the weights to play "
                             f"(None: train from scratch; --play plays save_model/{TRAINED.name})")
    parser.add_argument("--play", action="store_true",
                        help="play greedily without training, with --load or the shipped weights; writes nothing")
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif",
                        help="with --play: save the episodes played as an animated GIF (no window needed)")
    args = parser.parse_args(argv)
    if args.record is not None and not args.play:
        parser.error("argument --record: records what --play plays; add --play")
    return args


# ---- playing: the trained actor, greedily (the most probable action), no learning ----
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
    agent = A2CAgent(STATE_SIZE, ACTION_SIZE)

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
        print(f"loaded {args.load}")
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
        save_graph(graph_path, range(1, len(scores) + 1), scores, "episode", "CartPole A2C")

    def save_all():
        atomic_write(weights_path, agent.model.save_weights)
        draw_graph()
        writer.flush()
        print(f"weights: {weights_path}\ngraph: {graph_path}\n"
              f"tensorboard: tensorboard --logdir {save_dir / 'summary'}")

    start = time.perf_counter()
    for e in range(1, episodes + 1):
        state, _ = env.reset(seed=args.seed if e == 1 else None)
        score, actor_losses, critic_losses, done = 0, [], [], False
        while not (done or stop.requested):           # Ctrl-C or kill: stop between two steps
            action = agent.get_action(state)
            next_state, reward, terminated, truncated, _ = env.step(action)
            score += reward                           # the true episode length
            # Only a real failure ends the return; a 500-step time limit still bootstraps from V(s').
            actor_loss, critic_loss = agent.train_model(
                state, action, shape_reward(reward, terminated), next_state, terminated)
            actor_losses.append(actor_loss)
            critic_losses.append(critic_loss)
            state = next_state
            done = terminated or truncated
            total_steps += 1
        if not done:                                  # stopped in the middle of this episode
            break

        scores.append(score)
        mean_recent = float(np.mean(scores[-SOLVED_WINDOW:]))
        print(f"episode: {e} | score: {score:.1f} | mean of last {SOLVED_WINDOW}: {mean_recent:.1f}")
        log_scalars(writer, e, score=score, mean_score_last_10=mean_recent,
                    actor_loss=float(np.mean(actor_losses)), critic_loss=float(np.mean(critic_losses)))
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
