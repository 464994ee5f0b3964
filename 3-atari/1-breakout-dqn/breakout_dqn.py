"""DQN that learns Atari Breakout from pixels (Mnih et al., "Human-level control through deep
reinforcement learning", Nature 2015), the book's chapter on Breakout.

The network Q_theta(s, a) sees the last 4 screens (84x84 grey, newest first, as in the book) and is
trained on minibatches drawn at random from a replay memory, towards targets made by a frozen copy
Q_theta- (the target network, refreshed every `update_target_rate` steps):

    y    = r                                   if the transition lost a life (terminal for learning)
    y    = r + gamma * max_a' Q_theta-(s', a') otherwise
    loss = Huber(y - Q_theta(s, a))            (squared below 1, linear above: big errors stay bounded)

Rewards are clipped to [-1, 1] for learning; the printed score is the game's raw score (the book
printed the sum of clipped rewards).
Actions: 0 -> FIRE, 1 -> RIGHT, 2 -> LEFT. Every game starts with 1-30 random FIRE steps, and after a
lost life the agent presses FIRE to relaunch the ball.

What differs from the book's 2017 code, and why:
- The replay memory stores every 84x84 frame once (uint8) and rebuilds the 4-frame stacks from
  indices; the original stored two float stacks per transition (~22 GB for 400,000 transitions).
- After a lost life the history restarts from 4 copies of the current frame; the original rebuilt it
  with a reshape that scrambled the pixels.
- The network is trained every `--train-freq` agent steps, default 4 as in the Nature paper; the book
  trained on every step (pass --train-freq 1 for that). Epsilon falls per agent step once training runs.
- The target network is copied every 10,000 agent steps (--target-update), as in the book's code and
  the Nature paper; the book's study notes say every 50,000 steps (pass --target-update 50000).
- Adam(1e-4) instead of RMSprop(2.5e-4, eps 0.01) (both are the usual choices; Adam is steadier).
- Acting and training are compiled TensorFlow functions; the average max Q comes from the same call
  that picks the greedy action (steps that act at random do not run the network at all).

Run:  python 3-atari/1-breakout-dqn/breakout_dqn.py            (days on a CPU; resumable with --load)
Look: tensorboard --logdir 3-atari/1-breakout-dqn/summary      (pip install tensorboard to look)
Play: python 3-atari/1-breakout-dqn/play_dqn_model.py
"""
import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ale_py
import cv2
import gymnasium
import keras
import numpy as np
import tensorflow as tf
from keras import layers
from tensorflow.core.framework.summary_pb2 import SummaryMetadata

HERE = Path(__file__).resolve().parent
NAME = "breakout_dqn"

# The agent's 3 actions and the ALE action each one presses (ALE: 0 NOOP, 1 FIRE, 2 RIGHT, 3 LEFT).
FIRE, RIGHT, LEFT = 0, 1, 2
ALE_ACTION = (1, 2, 3)
FRAME_SIZE = 84
HISTORY_LENGTH = 4


def make_env(render=False):
    """Breakout with the book's BreakoutDeterministic-v4 settings: 4 frames per step, no sticky actions."""
    gymnasium.register_envs(ale_py)
    return gymnasium.make("ALE/Breakout-v5", frameskip=4, repeat_action_probability=0.0,
                          render_mode="human" if render else None)


# 210x160 RGB screen -> 84x84 grey uint8 (the network divides by 255 itself).
def pre_processing(observe):
    grey = cv2.cvtColor(observe, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA)


# A fresh history: 4 copies of one frame. Used at the start of a game and after a lost life.
def new_history(state):
    return np.repeat(state[np.newaxis], HISTORY_LENGTH, axis=0)


# Push the newest frame in front and drop the oldest one (channel 0 is the newest, as in the book).
def next_history_of(history, next_state):
    return np.concatenate((next_state[np.newaxis], history[:-1]), axis=0)


# Reset the game and press FIRE a random 1..no_op_steps times, so games do not all start alike.
def start_game(env, no_op_steps=30, seed=None):
    observe, info = env.reset(seed=seed)
    for _ in range(random.randint(1, no_op_steps)):
        observe, _, _, _, info = env.step(ALE_ACTION[FIRE])
    return observe, info["lives"]


class ReplayMemory:
    """A ring buffer of single frames; a state is the 4 slots ending at an index, newest first.

    Slot i holds a frame and, when `valid[i]`, the transition that led to it: (state = stack ending at
    i - 1, actions[i], rewards[i], next_state = stack ending at i, deads[i]). `starts[i]` marks a frame
    that begins a history (a new game, or the frame right after a lost life): stacks never reach
    behind it and repeat it instead, exactly as the agent's own history did. So no stack mixes games
    or lives, and each frame costs 84*84 bytes once.
    """

    def __init__(self, size):
        self.size = size
        self.frames = np.zeros((size, FRAME_SIZE, FRAME_SIZE), np.uint8)
        self.actions = np.zeros(size, np.int32)
        self.rewards = np.zeros(size, np.float32)
        self.deads = np.zeros(size, np.float32)
        self.starts = np.zeros(size, bool)
        self.valid = np.zeros(size, bool)
        self.cursor = 0          # the slot written next (the oldest one once the memory is full)
        self.count = 0

    def __len__(self):
        return self.count

    def _write(self, frame):
        index = self.cursor
        self.frames[index] = frame
        self.cursor = (index + 1) % self.size
        self.count = min(self.count + 1, self.size)
        return index

    # The first frame of a game: no transition leads to it.
    def start_history(self, state):
        index = self._write(state)
        self.starts[index], self.valid[index] = True, False

    # One transition: only its new frame is stored; after a lost life the history restarts from it.
    def append(self, action, reward, next_state, dead):
        index = self._write(next_state)
        self.actions[index], self.rewards[index], self.deads[index] = action, reward, dead
        self.starts[index], self.valid[index] = dead, True

    # Stacks (batch, 4, 84, 84) ending at the given slots, repeating a history's first frame.
    def stacks(self, ends):
        slots = (np.asarray(ends)[:, np.newaxis] - np.arange(HISTORY_LENGTH)) % self.size
        for back in range(1, HISTORY_LENGTH):
            newer = slots[:, back - 1]
            slots[:, back] = np.where(self.starts[newer], newer, slots[:, back])
        return self.frames[slots]

    # Uniform minibatch of transitions whose 4 older frames are all still in memory.
    def sample(self, batch_size):
        chosen = np.empty(0, np.int64)
        while len(chosen) < batch_size:
            candidates = np.random.randint(0, self.count, 2 * batch_size)
            usable = self.valid[candidates] & ((candidates - self.cursor) % self.size >= HISTORY_LENGTH)
            chosen = np.concatenate((chosen, candidates[usable]))
        chosen = chosen[:batch_size]
        return (self.stacks(chosen - 1), self.actions[chosen], self.rewards[chosen],
                self.stacks(chosen), self.deads[chosen])


# uint8 stacks (batch, 4, 84, 84) -> float network input (batch, 84, 84, 4) in [0, 1].
def to_network_input(stacks):
    return tf.cast(tf.transpose(stacks, (0, 2, 3, 1)), tf.float32) / 255.0


# y = r + gamma * max_a' Q_target(s', a'), with no bootstrap after a lost life.
def dqn_targets(rewards, deads, next_q, discount_factor):
    return rewards + (1.0 - deads) * discount_factor * tf.reduce_max(next_q, axis=1)


# The book's Huber loss: 0.5 * e^2 where |e| <= 1, |e| - 0.5 beyond, averaged over the batch.
def huber_loss(targets, q_values):
    error = tf.abs(targets - q_values)
    quadratic = tf.minimum(error, 1.0)
    linear = error - quadratic
    return tf.reduce_mean(0.5 * tf.square(quadratic) + linear)


class DQNAgent:
    def __init__(self, action_size=3, memory_size=400_000, train_start=50_000,
                 update_target_rate=10_000, exploration_steps=1_000_000):
        # Hyperparameters (the book's values unless the docstring says otherwise).
        self.action_size = action_size
        self.epsilon = 1.0
        self.epsilon_start, self.epsilon_end = 1.0, 0.1
        self.exploration_steps = exploration_steps
        self.epsilon_decay_step = (self.epsilon_start - self.epsilon_end) / self.exploration_steps
        self.batch_size = 32
        self.train_start = train_start
        self.update_target_rate = update_target_rate
        self.discount_factor = 0.99
        self.learning_rate = 1e-4
        self.no_op_steps = 30

        self.memory = ReplayMemory(memory_size)
        self.model = self.build_model()
        self.target_model = self.build_model()
        self.optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate)
        self.optimizer.build(self.model.trainable_variables)
        self.update_target_model()

    # The Nature CNN: 3 convolutions, a 512-unit layer, one Q-value per action.
    def build_model(self):
        return keras.Sequential([
            keras.Input((FRAME_SIZE, FRAME_SIZE, HISTORY_LENGTH)),
            layers.Conv2D(32, 8, strides=4, activation="relu"),
            layers.Conv2D(64, 4, strides=2, activation="relu"),
            layers.Conv2D(64, 3, strides=1, activation="relu"),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dense(self.action_size),
        ])

    # Hard update: target <- online. Called every update_target_rate agent steps.
    def update_target_model(self):
        self.target_model.set_weights(self.model.get_weights())

    # One compiled forward pass: the greedy action and its Q-value (logged as "max Q").
    @tf.function
    def greedy(self, history):
        q_values = self.model(to_network_input(history[tf.newaxis]), training=False)[0]
        return tf.argmax(q_values, output_type=tf.int32), tf.reduce_max(q_values)

    # Epsilon-greedy. Returns (action, max Q or None when the action was random).
    def get_action(self, history):
        if np.random.rand() <= self.epsilon:
            return random.randrange(self.action_size), None
        action, max_q = self.greedy(history)
        return int(action), float(max_q)

    # Store a transition; the book passed both 4-frame histories, here only the new frame travels.
    def append_sample(self, action, reward, next_state, dead):
        self.memory.append(action, reward, next_state, dead)

    # One compiled gradient step on a minibatch (tensors in, loss out).
    @tf.function
    def train_step(self, states, actions, rewards, next_states, deads):
        next_q = self.target_model(to_network_input(next_states), training=False)
        targets = dqn_targets(rewards, deads, next_q, self.discount_factor)
        with tf.GradientTape() as tape:
            q_values = self.model(to_network_input(states), training=True)
            chosen_q = tf.reduce_sum(q_values * tf.one_hot(actions, self.action_size), axis=1)
            loss = huber_loss(targets, chosen_q)
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return loss

    # Sample a minibatch from the replay memory and learn from it. Returns the loss.
    def train_model(self):
        return float(self.train_step(*self.memory.sample(self.batch_size)))


# ---- plumbing: saving, loading, arguments (the same in every chapter; safe to skip) ----
def atomic_write(path, write):
    """Call write(tmp) on a temp file beside `path`, then move it into place: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")   # keeps the suffix (.weights.h5 / .png / .json)
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
    try:
        model.load_weights(path)
    except Exception as error:            # missing, truncated, wrong architecture
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        # A wrong architecture: Keras says "... for object <Conv2D ...>:" and the reason on the next line.
        reason = lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]
        reason = reason.split(" Target variable:")[0]          # not the dump of the variable's values
        sys.exit(f"error: cannot load weights from {path} ({reason}); {how_to_make}")


def scalar(tag, value, step):
    """Like tf.summary.scalar, which needs the tensorboard package even to WRITE; this raw write tagged
    for the scalars plugin does not (tensorboard is needed only to look: pip install tensorboard)."""
    metadata = SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.constant(value, tf.float32), step=step, metadata=metadata.SerializeToString())


def sidecar_of(weights_path):
    """The small JSON beside a weights file: step count, epsilon and the score curve, for --load."""
    return Path(str(weights_path).removesuffix(".weights.h5") + ".json")


def save_json(path, data):
    def write(tmp):
        with open(tmp, "w") as file:
            json.dump(data, file)
    atomic_write(path, write)


def save_graph(path, curve):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if curve:
        steps = np.array([row[1] for row in curve])
        scores = np.array([row[2] for row in curve], dtype=float)
        ax.plot(steps, scores, ".", markersize=2, alpha=0.3, label="score per episode")
        window = min(100, len(scores))
        average = np.convolve(scores, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], average, label=f"mean of last {window} episodes")
        ax.legend(loc="upper left")
    ax.set_xlabel("agent steps (4 frames each)")
    ax.set_ylabel("score (raw game points)")
    ax.set_title("DQN on Breakout")
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def display_available():
    """ALE opens its own window (SDL); on Linux that needs an X or Wayland display (without one SDL crashes)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="DQN on Atari Breakout (the book's hyperparameters).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--episodes", type=positive_int, default=50_000, help="games to play")
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="stop after this many agent steps in total (counting resumed steps)")
    parser.add_argument("--memory-size", type=positive_int, default=400_000,
                        help="replay memory size in frames (84x84 uint8 each: 400,000 = 2.8 GB)")
    parser.add_argument("--train-start", type=positive_int, default=50_000,
                        help="frames in memory before training starts")
    parser.add_argument("--train-freq", type=positive_int, default=4,
                        help="train once every N agent steps (Nature: 4; the book trained every step: 1)")
    parser.add_argument("--target-update", type=positive_int, default=10_000,
                        help="copy the online network to the target network every N agent steps")
    parser.add_argument("--exploration-steps", type=positive_int, default=1_000_000,
                        help="agent steps (once training runs) over which epsilon falls from 1.0 to 0.1")
    parser.add_argument("--save-every", type=positive_int, default=1000,
                        help="save weights, sidecar and graph every N episodes (and always at exit)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="show the game window (slow)")
    parser.add_argument("--save-dir", type=Path, default=HERE,
                        help="artefacts go to DIR/save_model, DIR/save_graph, DIR/summary")
    parser.add_argument("--load", type=Path, default=None,
                        help="start from these weights; resumes step count and epsilon from the JSON beside them")
    return parser.parse_args(argv)


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt    # `kill PID` saves like Ctrl-C does


if __name__ == "__main__":
    args = parse_args()
    model_dir, graph_dir = args.save_dir / "save_model", args.save_dir / "save_graph"
    summary_dir = args.save_dir / "summary" / NAME
    for folder in (model_dir, graph_dir, summary_dir):
        ensure_writable(folder)
    weights_path, graph_path = model_dir / f"{NAME}.weights.h5", graph_dir / f"{NAME}.png"

    if args.seed is not None:
        random.seed(args.seed)
        np.random.seed(args.seed)
        keras.utils.set_random_seed(args.seed)

    if args.render and not display_available():
        print("no display found: running headless (pass --render on a machine with a display)")
        args.render = False
    env = make_env(args.render)
    agent = DQNAgent(memory_size=args.memory_size, train_start=args.train_start,
                     update_target_rate=args.target_update, exploration_steps=args.exploration_steps)

    # Resume: weights, then the step count, epsilon and score curve saved beside them.
    global_step, first_episode, curve = 0, 1, []
    if args.load is not None:
        load_weights(agent.model, args.load, f"train one with: python {Path(__file__).name}")
        agent.update_target_model()
        if sidecar_of(args.load).exists():
            saved = json.loads(sidecar_of(args.load).read_text())
            global_step, agent.epsilon = saved["global_step"], saved["epsilon"]
            first_episode, curve = saved["episode"] + 1, saved["curve"]
            print(f"resuming at step {global_step}, episode {first_episode}, epsilon {agent.epsilon:.3f}")
        else:
            print(f"no {sidecar_of(args.load).name} beside the weights: starting at step 0, epsilon 1.0")
    writer = tf.summary.create_file_writer(str(summary_dir))

    def save_all():
        atomic_write(weights_path, agent.model.save_weights)
        episode_done = curve[-1][0] if curve else first_episode - 1
        save_json(sidecar_of(weights_path), {"global_step": global_step, "epsilon": agent.epsilon,
                                             "episode": episode_done, "curve": curve})
        save_graph(graph_path, curve)

    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        for episode in range(first_episode, args.episodes + 1):
            if args.max_steps is not None and global_step >= args.max_steps:
                break
            observe, lives = start_game(env, agent.no_op_steps,
                                        seed=args.seed if episode == first_episode else None)
            state = pre_processing(observe)
            history = new_history(state)
            agent.memory.start_history(state)
            done, dead = False, False
            score, step, sum_max_q, greedy_steps, sum_loss, train_steps = 0.0, 0, 0.0, 0, 0.0, 0
            started = time.perf_counter()

            while not done:
                global_step += 1
                step += 1
                # After a lost life the ball must be relaunched: press FIRE.
                if dead:
                    action, max_q, dead = FIRE, None, False
                else:
                    action, max_q = agent.get_action(history)
                if max_q is not None:
                    sum_max_q, greedy_steps = sum_max_q + max_q, greedy_steps + 1

                observe, reward, terminated, truncated, info = env.step(ALE_ACTION[action])
                done = terminated or truncated
                next_state = pre_processing(observe)
                # A lost life ends the "episode" for learning (no bootstrapping past it).
                dead = terminated or info["lives"] < lives
                lives = info["lives"]

                agent.append_sample(action, np.clip(reward, -1.0, 1.0), next_state, dead)
                if len(agent.memory) >= agent.train_start:
                    if agent.epsilon > agent.epsilon_end:
                        agent.epsilon = max(agent.epsilon_end, agent.epsilon - agent.epsilon_decay_step)
                    if global_step % args.train_freq == 0:
                        sum_loss += agent.train_model()
                        train_steps += 1
                if global_step % agent.update_target_rate == 0:
                    agent.update_target_model()

                score += reward
                history = new_history(next_state) if dead else next_history_of(history, next_state)
                if args.max_steps is not None and global_step >= args.max_steps:
                    break

            steps_per_second = step / (time.perf_counter() - started)
            avg_max_q = sum_max_q / greedy_steps if greedy_steps else None    # None: no greedy step yet
            q_text = "-" if avg_max_q is None else f"{avg_max_q:.4f}"
            avg_loss = sum_loss / train_steps if train_steps else 0.0
            curve.append([episode, global_step, score])
            print(f"episode: {episode} | score: {score:.1f} | steps: {step} | epsilon: {agent.epsilon:.3f}"
                  f" | global step: {global_step} | avg max Q: {q_text}"
                  f" | avg loss: {avg_loss:.5f}"
                  f" | steps/s: {steps_per_second:.0f}", flush=True)
            with writer.as_default():
                scalar("Total Reward/Episode", score, episode)
                if avg_max_q is not None:
                    scalar("Average Max Q/Episode", avg_max_q, episode)
                scalar("Duration/Episode", step, episode)
                scalar("Average Loss/Episode", avg_loss, episode)
                scalar("Steps per Second", steps_per_second, episode)
            if episode % args.save_every == 0:
                save_all()
    except KeyboardInterrupt:
        save_all()
        writer.flush()
        print(f"\ninterrupted at step {global_step}: weights saved to {weights_path}, graph to {graph_path}")
        sys.exit(130)

    save_all()
    writer.flush()
    print(f"weights saved to {weights_path} (step count and epsilon in {sidecar_of(weights_path).name}),"
          f" graph to {graph_path}, TensorBoard logs in {summary_dir}")
