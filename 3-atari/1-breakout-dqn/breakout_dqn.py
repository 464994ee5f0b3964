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
- The step count, epsilon and score curve that --load resumes from are stored inside the weights file
  (HDF5 attributes), so one atomic rename writes them together; the shipped weights from before that
  keep them in breakout_dqn_trained.json beside the file, which is still read.
- `--precision bfloat16` runs the network's maths in bfloat16 (Keras's mixed_bfloat16 policy: the weights,
  the Q-value layer, the Huber loss and Adam stay float32, so weight files are the same in both precisions).
  `--precision auto` (the default) uses it only where the hardware makes it faster: a GPU with bfloat16
  tensor cores or a CPU with AMX; on a CPU with only AVX-512 BF16 it measured slower than float32.

Run:   python 3-atari/1-breakout-dqn/breakout_dqn.py            (days on a CPU; resumable with --load)
Watch: tensorboard --logdir 3-atari/1-breakout-dqn/summary
Play:  python 3-atari/1-breakout-dqn/breakout_dqn.py --play     (or play_dqn_model.py, the book's script)
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
import h5py
import keras
import numpy as np
import tensorflow as tf
from keras import layers

HERE = Path(__file__).resolve().parent
NAME = "breakout_dqn"
TRAINED = HERE / "save_model" / f"{NAME}_trained.weights.h5"

# The agent's 3 actions and the ALE action each one presses (ALE: 0 NOOP, 1 FIRE, 2 RIGHT, 3 LEFT).
FIRE, RIGHT, LEFT = 0, 1, 2
ALE_ACTION = (1, 2, 3)
FRAME_SIZE = 84
HISTORY_LENGTH = 4

# ---- hyperparameters (the book's names and values unless the docstring says otherwise) ----
EPISODES = 50_000               # games to train
MEMORY_SIZE = 400_000           # replay memory, in frames (84x84 uint8 each: 400,000 = 2.8 GB)
TRAIN_START = 50_000            # frames in memory before training starts
TRAIN_FREQ = 4                  # one minibatch every 4 agent steps (Nature; the book: every step)
UPDATE_TARGET_RATE = 10_000     # agent steps between copies of the online network to the target network
EXPLORATION_STEPS = 1_000_000   # agent steps (once training runs) over which epsilon falls
EPSILON_START, EPSILON_END = 1.0, 0.1
BATCH_SIZE = 32
DISCOUNT_FACTOR = 0.99
LEARNING_RATE = 1e-4            # Adam
NO_OP_STEPS = 30                # a game starts with 1..30 random FIREs
SAVE_EVERY = 1000               # episodes between checkpoints (and always at exit)
PLAY_EPISODES = 10              # watching: games to play
PLAY_EPSILON = 0.01             # watching: a little randomness, as in the book's play_dqn_model.py


def make_env(render=False, record=False):
    """Breakout with the book's BreakoutDeterministic-v4 settings: 4 frames per step, no sticky actions.
    record=True keeps the colour screen for env.render() (--record) instead of opening a window."""
    gymnasium.register_envs(ale_py)
    return gymnasium.make("ALE/Breakout-v5", frameskip=4, repeat_action_probability=0.0,
                          render_mode="rgb_array" if record else "human" if render else None)


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
def start_game(env, no_op_steps=NO_OP_STEPS, seed=None):
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

    # Uniform minibatch of transitions whose 4 older frames are all still in memory. The newest slot is
    # always one (a memory of more than HISTORY_LENGTH frames; main() checks --memory-size), so this ends.
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
    def __init__(self, action_size=3, memory_size=MEMORY_SIZE, train_start=TRAIN_START,
                 update_target_rate=UPDATE_TARGET_RATE, exploration_steps=EXPLORATION_STEPS,
                 learning_rate=LEARNING_RATE, precision="float32"):
        # Hyperparameters (the module's constants above; the arguments are what the command line changes).
        self.action_size = action_size
        self.epsilon = EPSILON_START
        self.epsilon_start, self.epsilon_end = EPSILON_START, EPSILON_END
        self.exploration_steps = exploration_steps
        self.epsilon_decay_step = (self.epsilon_start - self.epsilon_end) / self.exploration_steps
        self.batch_size = BATCH_SIZE
        self.train_start = train_start
        self.update_target_rate = update_target_rate
        self.discount_factor = DISCOUNT_FACTOR
        self.learning_rate = learning_rate
        self.no_op_steps = NO_OP_STEPS
        self.global_step = 0     # agent steps taken so far, resumed runs included (4 frames each)
        self.precision = precision   # the maths of the network: "float32" or "bfloat16" (weights: float32)

        self.memory = ReplayMemory(memory_size)
        self.model = self.build_model()
        self.target_model = self.build_model()
        self.optimizer = keras.optimizers.Adam(learning_rate=self.learning_rate)
        self.optimizer.build(self.model.trainable_variables)
        self.update_target_model()

    # The Nature CNN: 3 convolutions, a 512-unit layer, one Q-value per action. In bfloat16 the hidden
    # layers compute in bfloat16 on float32 weights; the Q-value layer stays float32 (close Q-values of two
    # actions must not round to a tie).
    def build_model(self):
        hidden = dtype_policy(self.precision)
        return keras.Sequential([
            keras.Input((FRAME_SIZE, FRAME_SIZE, HISTORY_LENGTH)),
            layers.Conv2D(32, 8, strides=4, activation="relu", dtype=hidden),
            layers.Conv2D(64, 4, strides=2, activation="relu", dtype=hidden),
            layers.Conv2D(64, 3, strides=1, activation="relu", dtype=hidden),
            layers.Flatten(dtype=hidden),
            layers.Dense(512, activation="relu", dtype=hidden),
            layers.Dense(self.action_size, dtype="float32"),
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


# ---- saving and loading: the weights file also holds the step count, epsilon and score curve ----
def save_weights(model, path, global_step, epsilon, episode, curve):
    """The weights and what --load resumes from (agent steps, epsilon, last finished game, the score curve
    as rows [episode, global step, score]) in ONE Keras weights file, written atomically: after a kill
    the file on disk is the old one or the new one, never weights with another run's step count."""
    def write(tmp):
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as file:
            file.attrs.update(dqn_global_step=global_step, dqn_epsilon=epsilon, dqn_episode=episode)
            file.create_dataset("dqn_curve", data=np.asarray(curve, np.float64).reshape(-1, 3))
    atomic_write(path, write)


def old_sidecar_of(weights_path):
    """Where weights saved before the facts went into the file kept them (the shipped _trained ones)."""
    return Path(str(weights_path).removesuffix(".weights.h5") + ".json")


def weights_facts(path):
    """{global_step, epsilon, episode, curve} saved with the weights, or None when there are none (plain
    Keras weights). Call it after load_weights, which reports a file that is not readable at all."""
    try:
        with h5py.File(path, "r") as file:
            if "dqn_global_step" in file.attrs:
                return {"global_step": int(file.attrs["dqn_global_step"]),
                        "epsilon": float(file.attrs["dqn_epsilon"]),
                        "episode": int(file.attrs["dqn_episode"]),
                        "curve": [[int(e), int(s), float(score)] for e, s, score in file["dqn_curve"][()]]}
    except (OSError, KeyError, ValueError, TypeError) as error:
        sys.exit(f"error: cannot read the step count and epsilon stored in {path} ({type(error).__name__}: "
                 f"{error}); train anew without --load")
    sidecar = old_sidecar_of(path)
    if not sidecar.exists():
        return None
    try:
        saved = json.loads(sidecar.read_text())
        facts = {"global_step": int(saved["global_step"]), "epsilon": float(saved["epsilon"]),
                 "episode": int(saved["episode"]),
                 "curve": [[int(e), int(s), float(score)] for e, s, score in saved["curve"]]}
        # The sidecar must describe one run: epsilon a probability, the curve ending at its last game.
        if not (0.0 <= facts["epsilon"] <= 1.0 and facts["global_step"] >= 0 and facts["episode"] >= 0):
            raise ValueError("step count, episode or epsilon out of range")
        if facts["curve"] and (facts["curve"][-1][0] != facts["episode"]
                               or facts["curve"][-1][1] > facts["global_step"]):
            raise ValueError("its score curve does not end at its last episode and step")
    except (OSError, ValueError, KeyError, TypeError) as error:
        sys.exit(f"error: cannot read {sidecar}, the step count and epsilon of {path.name} "
                 f"({type(error).__name__}: {error}); move it away to start from step 0")
    return facts


NEVER = type("Never", (), {"requested": False})()   # a stop flag that never stops (tests, benchmarks)


def seed_everything(seed):
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        keras.utils.set_random_seed(seed)


def stopped_before_training():
    """A stop signal came before the first training step: nothing to save, one line, exit 130."""
    print("interrupted before training started: nothing saved", file=sys.stderr)
    sys.exit(130)


# ---- watching: the book's play_dqn_model.py (that script calls play_main) ----
def play(agent, env, episodes, max_episode_steps=None, seed=None, stop=NEVER, frames=None):
    """Play `episodes` games with the agent's epsilon, learning nothing; FIRE relaunches the ball after a
    lost life. Prints one line a game and returns the scores (a game cut short by a stop is not counted).
    `frames`, when given, receives the colour screen after every step (--record)."""
    scores = []
    for episode in range(1, episodes + 1):
        if stop.requested:
            break
        observe, lives = start_game(env, agent.no_op_steps, seed=seed if episode == 1 else None)
        history = new_history(pre_processing(observe))
        done, dead, score, step = False, False, 0.0, 0
        while not done and not stop.requested:
            step += 1
            action = FIRE if dead else agent.get_action(history)[0]
            observe, reward, terminated, truncated, info = env.step(ALE_ACTION[action])
            if frames is not None:
                frames.append(env.render())
            done = terminated or truncated or (max_episode_steps is not None and step >= max_episode_steps)
            next_state = pre_processing(observe)
            dead = info["lives"] < lives
            lives = info["lives"]
            score += reward
            history = new_history(next_state) if dead else next_history_of(history, next_state)
        if not done:
            break
        scores.append(score)
        print(f"episode: {episode} | score: {score:.1f} | steps: {step}", flush=True)
    return scores


def play_main(load=TRAINED, episodes=PLAY_EPISODES, epsilon=PLAY_EPSILON, max_episode_steps=None,
              render=False, seed=None, precision="auto", record=None):
    """--play here and play_dqn_model.py: load the weights, play, print the mean score. Writes nothing but,
    with `record` (a .gif path), the games' colour screens as an animated GIF."""
    stop = StopFlag()
    if record is not None:
        ensure_writable(record.parent.resolve())
    seed_everything(seed)
    precision = announce_precision(precision)
    agent = DQNAgent(memory_size=1, precision=precision)     # playing needs no replay memory
    load_weights(agent.model, load, f"train them with: python {Path(__file__).name} (weights go to save_model/)")
    agent.epsilon = epsilon
    if render and not display_available():
        print("no display found: running headless (pass --render on a machine with a display)")
        render = False
    elif render and record is None and (refused := window_refused()):
        print(f"cannot open a window ({refused}): running headless")
        render = False
    if render and record is not None:
        print("recording: the screen is kept for the GIF, so no window opens")
    env = make_env(render, record is not None)
    frames = None if record is None else []
    scores = play(agent, env, episodes, max_episode_steps, seed, stop, frames)
    env.close()
    if frames:
        write_gif(record, frames, seconds_per_frame=4 / 60)            # an agent step is 4 frames at 60 Hz
    if stop.requested:
        print("interrupted")
        if not scores:
            sys.exit(130)
    print(f"mean score: {np.mean(scores):.1f} over {len(scores)} episodes")
    if stop.requested:
        sys.exit(130)


# ---- training: the book's loop ----
def train(agent, env, episodes=EPISODES, max_steps=None, train_freq=TRAIN_FREQ, first_episode=1, curve=None,
          writer=None, save=None, save_every=SAVE_EVERY, seed=None, stop=NEVER):
    """Play and learn games first_episode..episodes, or until agent.global_step reaches max_steps, or until
    `stop` is raised (checked between steps; the unfinished game is then not counted). Each finished game
    appends [episode, global step, score] to `curve`, prints a line and goes to TensorBoard (`writer`);
    save() runs every `save_every` games. Returns True when `stop` ended it."""
    curve = [] if curve is None else curve
    for episode in range(first_episode, episodes + 1):
        if stop.requested or (max_steps is not None and agent.global_step >= max_steps):
            break
        observe, lives = start_game(env, agent.no_op_steps, seed=seed if episode == first_episode else None)
        state = pre_processing(observe)
        history = new_history(state)
        agent.memory.start_history(state)
        done, dead = False, False
        score, step, sum_max_q, greedy_steps, sum_loss, train_steps = 0.0, 0, 0.0, 0, 0.0, 0
        started = time.perf_counter()

        while not done and not stop.requested:
            agent.global_step += 1
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
                if agent.global_step % train_freq == 0:
                    sum_loss += agent.train_model()
                    train_steps += 1
            if agent.global_step % agent.update_target_rate == 0:
                agent.update_target_model()

            score += reward
            history = new_history(next_state) if dead else next_history_of(history, next_state)
            if max_steps is not None and agent.global_step >= max_steps:
                break
        if stop.requested and not done:
            break                                                       # a stopped game is not counted

        steps_per_second = step / (time.perf_counter() - started)
        avg_max_q = sum_max_q / greedy_steps if greedy_steps else None    # None: no greedy step yet
        q_text = "-" if avg_max_q is None else f"{avg_max_q:.4f}"
        avg_loss = sum_loss / train_steps if train_steps else 0.0
        curve.append([episode, agent.global_step, score])
        print(f"episode: {episode} | score: {score:.1f} | steps: {step} | epsilon: {agent.epsilon:.3f}"
              f" | global step: {agent.global_step} | avg max Q: {q_text}"
              f" | avg loss: {avg_loss:.5f}"
              f" | steps/s: {steps_per_second:.0f}", flush=True)
        if writer is not None:
            scalars = {"Total Reward/Episode": score, "Duration/Episode": step,
                       "Average Loss/Episode": avg_loss, "Steps per Second": steps_per_second}
            if avg_max_q is not None:
                scalars["Average Max Q/Episode"] = avg_max_q
            log_scalars(writer, episode, **scalars)
        if save is not None and episode % save_every == 0:
            save()
    return stop.requested


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


def window_refused():
    """None when a window can open on this display, else the reason in a few words. ALE's own window (SDL) ends the
    whole process with a crash where DISPLAY names a screen that does not answer; Tk fails politely, so ask it."""
    try:
        import tkinter
        tkinter.Tk().destroy()
    except ImportError:
        return None                       # no Tk to ask: let the window try
    except tkinter.TclError as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else "TclError"
    return None


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


def cpu_flags():
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo (an empty set elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def visible_gpus():
    """[(name, (major, minor) compute capability or None)] for each GPU that TensorFlow sees."""
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append((details.get("device_name", gpu.name), details.get("compute_capability")))
    return gpus


def bfloat16_hardware(flags, gpus):
    """(True, why) where this hardware does bfloat16 matrix maths faster than float32, else (False, why).
    TensorFlow runs the networks on the first GPU when there is one; otherwise on the CPU."""
    if gpus:
        name, capability = gpus[0]
        if capability is not None and tuple(capability) >= (8, 0):
            return True, f"the GPU ({name}, compute capability {capability[0]}.{capability[1]}) has bfloat16 tensor cores"
        return False, f"the GPU ({name}) has no bfloat16 tensor cores (those need compute capability 8.0 or newer)"
    if "amx_bf16" in flags:
        return True, "the CPU has AMX bfloat16 units (amx_bf16)"
    if "avx512_bf16" in flags:
        return False, ("the CPU has AVX-512 BF16 but no AMX, and there bfloat16 measured slower than float32 "
                       "(see BENCHMARKS.md)")
    return False, "the CPU has no bfloat16 units: bfloat16 would be emulated, and slower"


def choose_precision(requested, hardware, auto_bfloat16=True):
    """(precision, why) for `--precision requested` on `hardware` = bfloat16_hardware(...). auto_bfloat16 says
    whether this chapter's network gains from bfloat16 at all where the hardware has it."""
    fast, why = hardware
    if requested != "auto":
        return requested, f"asked for; {why}"
    if fast and not auto_bfloat16:
        return "float32", f"auto: {why}, but this network measured no faster in bfloat16"
    return ("bfloat16" if fast else "float32"), f"auto: {why}"


def dtype_policy(precision):
    """Keras dtype policy of the hidden layers: bfloat16 maths on float32 weights, or plain float32."""
    return "mixed_bfloat16" if precision == "bfloat16" else "float32"


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
    parser = argparse.ArgumentParser(description="DQN on Atari Breakout (the book's hyperparameters).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--episodes", type=positive_int, default=None,
                        help=f"games to train (None: {EPISODES:,}); with --play, games to play (None: {PLAY_EPISODES})")
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="stop after this many agent steps in total (counting resumed steps)")
    parser.add_argument("--memory-size", type=positive_int, default=MEMORY_SIZE,
                        help="replay memory size in frames (84x84 uint8 each: 400,000 = 2.8 GB)")
    parser.add_argument("--train-start", type=positive_int, default=TRAIN_START,
                        help="frames in memory before training starts")
    parser.add_argument("--train-freq", type=positive_int, default=TRAIN_FREQ,
                        help="train once every N agent steps (Nature: 4; the book trained every step: 1)")
    parser.add_argument("--target-update", type=positive_int, default=UPDATE_TARGET_RATE,
                        help="copy the online network to the target network every N agent steps")
    parser.add_argument("--exploration-steps", type=positive_int, default=EXPLORATION_STEPS,
                        help=f"agent steps (once training runs) over which epsilon falls from {EPSILON_START} "
                             f"to {EPSILON_END}")
    parser.add_argument("--learning-rate", type=positive_float, default=LEARNING_RATE, help="Adam's step size")
    parser.add_argument("--save-every", type=positive_int, default=SAVE_EVERY,
                        help="save the weights (with step count, epsilon and curve) and graph every N episodes "
                             "(and always at exit)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (None: random)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="show the game window (slow)")
    parser.add_argument("--save-dir", type=Path, default=HERE,
                        help="artefacts go to DIR/save_model, DIR/save_graph, DIR/summary")
    parser.add_argument("--load", type=Path, default=None,
                        help="start from these weights, resuming their step count and epsilon (with --play: "
                             "play them)")
    parser.add_argument("--play", action="store_true",
                        help=f"do not train: play save_model/{TRAINED.name} (or --load) with epsilon "
                             f"{PLAY_EPSILON}, as play_dqn_model.py does; writes nothing")
    add_precision_argument(parser)
    add_record_argument(parser)
    args = parser.parse_args(argv)
    if args.record is not None and not args.play:
        parser.error("argument --record: records what --play plays; add --play")
    if args.seed is not None and not 0 <= args.seed < 2 ** 32:
        parser.error(f"argument --seed: must be between 0 and 2**32 - 1, got {args.seed}")
    # Sizes that would hang or never train: sample() needs a minibatch's worth of usable transitions.
    if args.memory_size < BATCH_SIZE + HISTORY_LENGTH:
        parser.error(f"argument --memory-size: the replay memory must hold a minibatch of {BATCH_SIZE} "
                     f"transitions and a {HISTORY_LENGTH}-frame history, at least {BATCH_SIZE + HISTORY_LENGTH}"
                     f" frames; got {args.memory_size}")
    if args.train_start < BATCH_SIZE:
        parser.error(f"argument --train-start: training needs a minibatch of {BATCH_SIZE} transitions in "
                     f"memory first; got {args.train_start}")
    if args.train_start > args.memory_size:
        parser.error(f"argument --train-start: {args.train_start} frames never fit in a replay memory of "
                     f"--memory-size {args.memory_size}, so training would never start")
    return args


PRECISIONS = ("auto", "float32", "bfloat16")


def add_record_argument(parser):
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif",
                        help="save the games played as an animated GIF, in colour (no window needed; "
                             "--episodes 1 keeps it short)")


def add_precision_argument(parser):
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the network's maths: bfloat16 (weights stay float32) is faster only on a GPU with "
                             "bfloat16 tensor cores or a CPU with AMX; auto picks it there and float32 elsewhere")


def announce_precision(requested):
    """Decide float32 or bfloat16 for this machine and say which, and why, in the run's first lines."""
    precision, why = choose_precision(requested, bfloat16_hardware(cpu_flags(), visible_gpus()))
    print(f"precision: {precision} ({why})", flush=True)
    return precision


def main(argv=None):
    args = parse_args(argv)
    if args.play:
        return play_main(args.load or TRAINED, args.episodes or PLAY_EPISODES, PLAY_EPSILON, None,
                         args.render, args.seed, args.precision, args.record)
    stop = StopFlag()
    precision = announce_precision(args.precision)
    if args.render and not display_available():
        print("no display found: running headless (pass --render on a machine with a display)")
        args.render = False
    elif args.render and (refused := window_refused()):
        print(f"cannot open a window ({refused}): running headless")
        args.render = False
    print(f"DQN on Breakout: replay memory {args.memory_size:,} frames, training from {args.train_start:,}, "
          f"one minibatch every {args.train_freq} steps, learning rate {args.learning_rate}", flush=True)
    seed_everything(args.seed)
    agent = DQNAgent(memory_size=args.memory_size, train_start=args.train_start,
                     update_target_rate=args.target_update, exploration_steps=args.exploration_steps,
                     learning_rate=args.learning_rate, precision=precision)

    # Resume: the weights, then the step count, epsilon and score curve saved with them. All inputs are
    # checked before any folder is made: a run that stops on bad input leaves nothing behind.
    first_episode, curve = 1, []
    if args.load is not None:
        load_weights(agent.model, args.load, f"train them with: python {Path(__file__).name}")
        agent.update_target_model()
        facts = weights_facts(args.load)
        if facts is not None:
            agent.global_step, agent.epsilon = facts["global_step"], facts["epsilon"]
            first_episode, curve = facts["episode"] + 1, facts["curve"]
            print(f"resuming at step {agent.global_step}, episode {first_episode}, epsilon {agent.epsilon:.3f}")
        else:
            print(f"no step count in {args.load.name} (nor {old_sidecar_of(args.load).name} beside it): "
                  "starting at step 0, epsilon 1.0")
    if stop.requested:                    # stopped while the networks were built: before any folder is made
        stopped_before_training()
    model_dir, graph_dir = args.save_dir / "save_model", args.save_dir / "save_graph"
    summary_dir = args.save_dir / "summary" / NAME
    for folder in (model_dir, graph_dir, summary_dir):
        ensure_writable(folder)
    weights_path, graph_path = model_dir / f"{NAME}.weights.h5", graph_dir / f"{NAME}.png"
    env = make_env(args.render)
    writer = tf.summary.create_file_writer(str(summary_dir))

    def save_all():
        episode_done = curve[-1][0] if curve else first_episode - 1
        save_weights(agent.model, weights_path, agent.global_step, agent.epsilon, episode_done, curve)
        save_graph(graph_path, [row[1] for row in curve], [row[2] for row in curve],
                   "agent steps (4 frames each)", "DQN on Breakout")

    start_step = agent.global_step
    stopped = train(agent, env, args.episodes or EPISODES, args.max_steps, args.train_freq, first_episode, curve,
                    writer, save_all, args.save_every, args.seed, stop)
    env.close()
    if stopped and agent.global_step == start_step:
        stopped_before_training()
    save_all()
    writer.flush()
    if stopped:
        print(f"\ninterrupted at step {agent.global_step}: weights saved to {weights_path}, graph to {graph_path}")
        sys.exit(130)
    print(f"weights saved to {weights_path} (step count, epsilon and score curve inside it),"
          f" graph to {graph_path}, TensorBoard logs in {summary_dir}")


if __name__ == "__main__":
    main()
