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
- The replay memory (frame_memory.py) stores every 84x84 frame once (uint8) and rebuilds the 4-frame
  stacks from indices; the original stored two float stacks per transition (~22 GB for 400,000 transitions).
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
  (HDF5 attributes), so one atomic rename writes them together (dqn_checkpoint.py); the shipped weights
  from before that keep them in breakout_dqn_trained.json beside the file, which is still read. A failed save is
  one line (training goes on), a fresh run keeps the last one's files, and NaN weights are never saved.
- `--precision bfloat16` runs the hidden layers in bfloat16 (Keras's mixed_bfloat16: the weights, the Q-value
  layer, the Huber loss and Adam stay float32, so weight files are the same in both precisions); `auto` (the
  default) picks it only where it is faster: a GPU with bfloat16 tensor cores or a CPU with AMX.

Run:   python 3-atari/1-breakout-dqn/breakout_dqn.py            (days on a CPU; resumable with --load)
Watch: tensorboard --logdir 3-atari/1-breakout-dqn/summary
Play:  python 3-atari/1-breakout-dqn/breakout_dqn.py --play     (or play_dqn_model.py, the book's script)
"""
import argparse
import os
import random
from pathlib import Path

# The jobs every chapter shares (plumbing.py), first: a stop signal while the libraries below load is kept.
from plumbing import (NEVER, StopFlag, add_precision_argument, add_seed_argument, announce_precision,
                      catch_signals_at_start, dtype_policy, frames_for, gif_path, headless_unless_display,
                      headless_unless_window, load_weights, parse_arguments, positive_float, positive_int,
                      report_scores, save_folder, seed_everything, stopped_before_training, write_gif)

catch_signals_at_start(__name__)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from keras import layers

# This folder's modules: saving and logging, the world, the replay memory.
from dqn_checkpoint import EpisodeStats, RunFiles, resume
from environment import (ALE_ACTION, FIRE, FRAME_SIZE, HISTORY_LENGTH, make_env, new_history, next_history_of,
                         pre_processing, start_game)
from frame_memory import ReplayMemory, check_sizes

HERE = Path(__file__).resolve().parent
NAME = "breakout_dqn"
TRAINED = HERE / "save_model" / f"{NAME}_trained.weights.h5"

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
        done, dead, score, step = False, False, 0.0, 0
        stats = EpisodeStats()       # the game's average max Q and loss, and its speed, for its line and TensorBoard

        while not done and not stop.requested:
            agent.global_step += 1
            step += 1
            # After a lost life the ball must be relaunched: press FIRE.
            if dead:
                action, max_q, dead = FIRE, None, False
            else:
                action, max_q = agent.get_action(history)
            stats.add_max_q(max_q)

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
                    stats.add_loss(agent.train_model(), stop)          # a loss of NaN or inf stops the run
            if agent.global_step % agent.update_target_rate == 0:
                agent.update_target_model()

            score += reward
            history = new_history(next_state) if dead else next_history_of(history, next_state)
            if max_steps is not None and agent.global_step >= max_steps:
                break
        if stop.requested and not done:
            break                                                       # a stopped game is not counted

        curve.append([episode, agent.global_step, score])
        stats.report(writer, episode, score, step, agent.epsilon, agent.global_step)
        if save is not None and episode % save_every == 0:
            save()
    return stop.requested


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
    frames = frames_for(record)                 # a list to keep the screens in, with --record
    seed_everything(seed)
    precision = announce_precision(precision)
    agent = DQNAgent(memory_size=1, precision=precision)     # playing needs no replay memory
    load_weights(agent.model, load, f"train them with: python {Path(__file__).name} (weights go to save_model/)")
    agent.epsilon = epsilon
    # Recording draws the screen for the GIF, so it needs a display but never asks for a window.
    render = headless_unless_window(render) if record is None else headless_unless_display(render)
    if render and record is not None:
        print("recording: the screen is kept for the GIF, so no window opens")
    env = make_env(render, record is not None)
    scores = play(agent, env, episodes, max_episode_steps, seed, stop, frames)
    env.close()
    if frames:
        write_gif(record, frames, seconds_per_frame=4 / 60)            # an agent step is 4 frames at 60 Hz
    report_scores(scores, stop)


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
    add_seed_argument(parser, help="random seed (None: random)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="show the game window (slow)")
    parser.add_argument("--save-dir", type=save_folder, default=HERE,
                        help="artefacts go to DIR/save_model, DIR/save_graph, DIR/summary")
    parser.add_argument("--load", type=Path, default=None,
                        help="start from these weights, resuming their step count and epsilon (with --play: play them)")
    parser.add_argument("--play", action="store_true",
                        help=f"do not train: play save_model/{TRAINED.name} (or --load) with epsilon "
                             f"{PLAY_EPSILON}, as play_dqn_model.py does; writes nothing")
    add_precision_argument(parser)
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif",
                        help="save the games played as an animated GIF, in colour (no window needed; "
                             "--episodes 1 keeps it short)")
    args = parse_arguments(parser, argv)
    # Sizes that would hang, never train, or (training) not fit in this machine's memory.
    check_sizes(parser, args.memory_size, args.train_start, BATCH_SIZE, training=not args.play)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.play:
        return play_main(args.load or TRAINED, args.episodes or PLAY_EPISODES, PLAY_EPSILON, None,
                         args.render, args.seed, args.precision, args.record)
    stop = StopFlag()
    precision = announce_precision(args.precision)
    args.render = headless_unless_window(args.render)
    print(f"DQN on Breakout: replay memory {args.memory_size:,} frames, training from {args.train_start:,}, "
          f"one minibatch every {args.train_freq} steps, learning rate {args.learning_rate}", flush=True)
    seed_everything(args.seed)
    agent = DQNAgent(memory_size=args.memory_size, train_start=args.train_start,
                     update_target_rate=args.target_update, exploration_steps=args.exploration_steps,
                     learning_rate=args.learning_rate, precision=precision)

    # Resume (--load) before any folder is made: a run that stops on bad input leaves nothing behind.
    first_episode, curve = 1, []
    if args.load is not None:
        first_episode, curve = resume(agent, args.load, f"train them with: python {Path(__file__).name}")
    if stop.requested:                    # stopped while the networks were built: before any folder is made
        stopped_before_training()
    files = RunFiles(args.save_dir, NAME, resumed_from=args.load)   # folders checked, an earlier run's files kept
    env = make_env(args.render)
    writer = tf.summary.create_file_writer(str(files.summary))

    def save_all(final=False):            # the weights with their step count, epsilon and curve, then the graph
        return files.save(agent, curve, first_episode - 1, stop, final)

    start_step = agent.global_step
    stopped = train(agent, env, args.episodes or EPISODES, args.max_steps, args.train_freq, first_episode, curve,
                    writer, save_all, args.save_every, args.seed, stop)
    env.close()
    if stopped and agent.global_step == start_step:
        stopped_before_training()
    save_all(final=True)
    writer.flush()
    files.last_line(stop, stopped, agent.global_step)      # exit 1 after a divergence, 130 after a stop signal


if __name__ == "__main__":
    main()
