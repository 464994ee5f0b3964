"""DQN on CartPole (the book's CartPole chapter: 2-cartpole/1-dqn/cartpole_dqn.py).

Deep Q-network (Mnih et al., 2015). A network Q(s, a) learns from random mini-batches of a replay memory,
toward targets computed by a copy of itself that is refreshed once per episode (the target network):

    y    = r + gamma * max_a' Q_target(s', a')        (y = r when s' ends the episode by a real failure)
    loss = mean over the mini-batch of (y - Q(s, a))^2

The book's shaping: a real failure (the pole falls or the cart leaves the track) earns -100 instead of +1.
Gymnasium stops every episode at 500 steps. That time limit is not a failure: it is neither punished nor
treated as terminal (the target still bootstraps from s'), and the score is the true episode length.
Stop rule: when the mean score of the last 10 episodes exceeds 490, save the weights and stop.
Ctrl-C, `kill` or a closed terminal stops training between two steps: the weights and the graph are saved, and
the script exits with status 130; while watching (--play) it stops and prints the mean of the games so far.
The weights are also saved every 10 episodes, and --load of them goes on where they stopped (training_record.py).

Speed: the agent acts with a numpy forward pass on the current weights (a few microseconds, against about
0.3 ms for a call into TensorFlow); one compiled training step per environment step returns the updated
weights for it. The replay memory is one preallocated numpy array (replay_memory.py, rows as in
transitions.py). The world (CartPole-v1, its window, the GIF of --record) is in environment.py; what a
run writes (weights, graph, TensorBoard) in training_record.py; the jobs every chapter shares in plumbing.py.
"""
import argparse
import os
import random
from pathlib import Path

from plumbing import (StopFlag, add_seed_argument, add_watching_arguments, catch_signals_at_start, load_weights,
                      parse_arguments, positive_int, report_scores, seed_everything, stopped_before_training)

catch_signals_at_start(__name__)     # a stop signal while TensorFlow loads (seconds) is kept, not a traceback
os.environ.setdefault("KERAS_BACKEND", "tensorflow")      # Keras 3 on TensorFlow; set before importing keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from environment import ACTION_SIZE, STATE_SIZE, make_env  # noqa: E402
from replay_memory import ReplayMemory  # noqa: E402
from training_record import TrainingRecord, add_save_dir_argument, stored_facts  # noqa: E402
from transitions import split_transitions  # noqa: E402

HERE = Path(__file__).resolve().parent                    # every path resolves against this folder
NAME = "cartpole_dqn"
TRAINED = HERE / "save_model" / f"{NAME}_trained.weights.h5"     # the shipped weights, played by --play

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
        self.train_step = tf.function(self._train_step).get_concrete_function(
            tf.TensorSpec([self.batch_size, self.memory.rows.shape[1]], tf.float32))
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
        states, actions, rewards, next_states, dones = split_transitions(batch, self.state_size)
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


# ---- the training loop: one training step per environment step, the target network copied every episode ----
# Ends when solved, after `episodes` (resumed ones included), or at a stop signal between two steps; then saves.
def train(agent, env, episodes, seed, stop, save_dir, load):
    record = TrainingRecord(save_dir, NAME, "CartPole DQN", load, episodes)   # the run's files: training_record.py
    scores, total_steps, solved = record.scores, 0, False      # the record's list: a resumed run's scores go on
    for e in range(len(scores) + 1, episodes + 1):
        state, _ = env.reset(seed=seed if total_steps == 0 else None)      # seeded once, at the run's first reset
        score, losses, done = 0, [], False
        while not (done or stop.requested):           # Ctrl-C or kill: stop between two steps
            action = agent.get_action(state)
            next_state, reward, terminated, truncated, _ = env.step(action)
            score += reward                           # the true episode length
            # Only a real failure ends the return; a 500-step time limit still bootstraps from s'.
            agent.append_sample(state, action, shape_reward(reward, terminated), next_state, terminated)
            if len(agent.memory) >= agent.train_start:
                losses.append(stop.check_finite(agent.train_model()))    # NaN or inf: diverged, stop
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
        record.episode_done(e, agent, stop, score=score, mean_score_last_10=mean_recent, epsilon=agent.epsilon,
                            average_loss=float(np.mean(losses)) if losses else 0.0)
        if len(scores) >= SOLVED_WINDOW and mean_recent > SOLVED_SCORE:
            solved = True
            break
    env.close()
    record.finish(agent, episodes, total_steps, solved, stop)     # exit 130 after a stop, 1 if diverged


# ---- playing: the trained network, greedily (argmax Q), no learning ----
# Returns the scores of the games played to the end (Ctrl-C or kill stops between two steps).
def play(env, agent, episodes, seed, stop):
    scores = []
    for e in range(1, episodes + 1):
        state, _ = env.reset(seed=seed if e == 1 else None)
        score, done = 0, False
        while not done:
            if stop.requested:
                return scores
            state, reward, terminated, truncated, _ = env.step(agent.get_greedy_action(state))
            score += reward
            done = terminated or truncated
        scores.append(score)
        print(f"episode: {e} | score: {score:.1f}")
    return scores


# ---- the command line ----
def parse_args(argv=None):
    hyperparameters = (f"book hyperparameters: gamma {DISCOUNT_FACTOR}, Adam lr {LEARNING_RATE}, "
                       f"epsilon {EPSILON_START} x{EPSILON_DECAY} per training step (floor {EPSILON_MIN}), "
                       f"replay memory {MEMORY_SIZE}, batch {BATCH_SIZE}, training starts at {TRAIN_START} "
                       f"samples, target network copied every episode, failure reward {FAILURE_REWARD:g}, "
                       f"stop when the mean of the last {SOLVED_WINDOW} scores > {SOLVED_SCORE}.")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=hyperparameters,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--episodes", type=positive_int, default=None, metavar="N",
                        help=f"training episodes (those of a resumed --load count), or games to play with --play "
                             f"(None: {EPISODES} to train, {PLAY_EPISODES} to play)")
    add_seed_argument(parser)
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="show the gymnasium window (needs pygame and a display; slows training to 50 fps)")
    add_save_dir_argument(parser, HERE)
    add_watching_arguments(parser, TRAINED, "start from these weights (saved by this script: go on from their episode "
                           f"and epsilon; others explore with epsilon {EPSILON_MIN}); with --play, the weights to play "
                           "(None: train from scratch)")
    return parse_arguments(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    stop = StopFlag()                 # from here on, Ctrl-C, kill and a closed terminal only raise this flag
    seed_everything(args.seed)
    agent = DQNAgent(STATE_SIZE, ACTION_SIZE)

    if args.play:
        agent.load(args.load or TRAINED)
        env = make_env(args.render, args.record)      # --record FILE.gif: written by env.close()
        scores = play(env, agent, args.episodes or PLAY_EPISODES, args.seed, stop)
        env.close()
        report_scores(scores, stop)
        return

    if args.load:
        agent.load(args.load)
        # Weights saved by this script go on with their own epsilon; others already play: explore little.
        agent.epsilon = stored_facts(args.load).get("epsilon", agent.epsilon_min)
        print(f"loaded {args.load}; epsilon starts at {agent.epsilon:g}")
    env = make_env(args.render)
    if stop.requested:
        env.close()
        stopped_before_training()
    train(agent, env, args.episodes or EPISODES, args.seed, stop, args.save_dir.resolve(), args.load)


if __name__ == "__main__":
    main()
