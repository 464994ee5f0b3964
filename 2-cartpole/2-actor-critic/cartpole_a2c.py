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
Ctrl-C, `kill` or a closed terminal stops training between two steps: the weights and the graph are saved, and
the script exits with status 130; while watching (--play) it stops and prints the mean of the games so far.

Speed: actions are sampled from a numpy forward pass of the actor on its current weights; the compiled
training step takes the transition as one row (transitions.py), updates both networks and returns the
actor's new weights. The world (CartPole-v1, its window, the GIF of --record) is in environment.py; what a
run writes and when (every 10 episodes; --load goes on from it) in training_record.py; shared jobs in plumbing.py.
"""
import argparse
import os
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
from training_record import TrainingRecord, add_save_dir_argument  # noqa: E402
from transitions import split_transitions, transition_rows, write_transition  # noqa: E402

HERE = Path(__file__).resolve().parent                    # every path resolves against this folder
NAME = "cartpole_a2c"
TRAINED = HERE / "save_model" / f"{NAME}_trained.weights.h5"     # the shipped weights, played by --play

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


# ---- the networks: actor 4 -> 24 (relu) -> 2 (softmax); critic 4 -> 24 (relu) -> 24 (relu) -> 1; he_uniform ----
def policy_numpy(actor_weights, state):
    """The actor's forward pass in numpy (same maths as actor(state)); used to act without TensorFlow."""
    w1, b1, w2, b2 = actor_weights
    hidden = np.maximum(state @ w1 + b1, 0.0)
    logits = np.nan_to_num(hidden @ w2 + b2)     # diverged (inf or NaN): still a policy; the loss check stops
    exp = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return exp / np.sum(exp, axis=-1, keepdims=True)


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
        self.transition = transition_rows(1, state_size)     # this step's <s, a, r, s', done>: transitions.py
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
        write_transition(self.transition[0], state, action, reward, next_state, done)
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


# ---- the training loop: one update of both networks per environment step ----
# Ends when solved, after `episodes` (resumed ones included), or at a stop signal between two steps; then saves.
def train(agent, env, episodes, seed, stop, save_dir, load):
    record = TrainingRecord(save_dir, NAME, "CartPole A2C", load, episodes)   # the run's files: training_record.py
    scores, total_steps, solved = record.scores, 0, False      # the record's list: a resumed run's scores go on
    for e in range(len(scores) + 1, episodes + 1):
        state, _ = env.reset(seed=seed if total_steps == 0 else None)      # seeded once, at the run's first reset
        score, losses, done = 0, [], False
        while not (done or stop.requested):           # Ctrl-C or kill: stop between two steps
            action = agent.get_action(state)
            next_state, reward, terminated, truncated, _ = env.step(action)
            score += reward                           # the true episode length
            # Only a real failure ends the return; a 500-step time limit still bootstraps from V(s').
            losses.append(agent.train_model(state, action, shape_reward(reward, terminated), next_state, terminated))
            stop.check_finite(sum(losses[-1]))        # a loss that is NaN or inf: training diverged, stop
            state = next_state
            done = terminated or truncated
            total_steps += 1
        if not done:                                  # stopped in the middle of this episode
            break

        scores.append(score)
        mean_recent = float(np.mean(scores[-SOLVED_WINDOW:]))
        print(f"episode: {e} | score: {score:.1f} | mean of last {SOLVED_WINDOW}: {mean_recent:.1f}")
        actor_losses, critic_losses = zip(*losses)            # (actor loss, critic loss) of every step
        record.episode_done(e, agent, stop, score=score, mean_score_last_10=mean_recent,
                            actor_loss=float(np.mean(actor_losses)), critic_loss=float(np.mean(critic_losses)))
        if len(scores) >= SOLVED_WINDOW and mean_recent > SOLVED_SCORE:
            solved = True
            break
    env.close()
    record.finish(agent, episodes, total_steps, solved, stop)     # exit 130 after a stop, 1 if diverged


# ---- playing: the trained actor, greedily (the most probable action), no learning ----
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
    hyperparameters = (f"book hyperparameters: gamma {DISCOUNT_FACTOR}, actor Adam lr {ACTOR_LEARNING_RATE}, critic "
                       f"Adam lr {CRITIC_LEARNING_RATE}, one update per step, failure reward {FAILURE_REWARD:g}, "
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
    add_watching_arguments(parser, TRAINED, "start training from these weights (saved by this script: go on from "
                           "their episode); with --play, the weights to play (None: train from scratch)")
    return parse_arguments(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    stop = StopFlag()                 # from here on, Ctrl-C, kill and a closed terminal only raise this flag
    seed_everything(args.seed)
    agent = A2CAgent(STATE_SIZE, ACTION_SIZE)

    if args.play:
        agent.load(args.load or TRAINED)
        env = make_env(args.render, args.record)      # --record FILE.gif: written by env.close()
        scores = play(env, agent, args.episodes or PLAY_EPISODES, args.seed, stop)
        env.close()
        report_scores(scores, stop)
        return

    if args.load:
        agent.load(args.load)
        print(f"loaded {args.load}")
    env = make_env(args.render)
    if stop.requested:
        env.close()
        stopped_before_training()
    train(agent, env, args.episodes or EPISODES, args.seed, stop, args.save_dir.resolve(), args.load)


if __name__ == "__main__":
    main()
