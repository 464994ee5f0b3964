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
  - The score graph is saved with the weights (every 100 episodes, at the end, on a stop signal), not after every
    episode (one PNG costs more than an episode). Ctrl-C, `kill` or a closed terminal stops between two steps,
    saves once, exits 130. --load of a file saved here goes on with its episode numbers and score curve.

    python reinforce_agent.py                         # train 2500 episodes (window if there is a display)
    python reinforce_agent.py --no-render --seed 1    # headless, reproducible
    python reinforce_agent.py --play                  # watch the shipped trained agent, greedily (argmax)
    tensorboard --logdir summary                      # score, steps, loss per episode

environment.py holds the world and its drawing; artefacts.py what training saves under --save-dir
(save_model/reinforce.weights.h5, save_graph/reinforce.png, summary/reinforce/); plumbing.py the shared jobs.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent      # every path resolves against this folder, not the cwd
sys.path.insert(0, str(HERE))               # this folder's environment.py, artefacts.py and plumbing.py
from plumbing import (StopFlag, add_seed_argument, add_watching_arguments, catch_signals_at_start,  # noqa: E402
                      finite, frames_for, load_weights, log_scalars, non_negative, parse_arguments, positive_float,
                      positive_int, probability, report_scores, save_folder, seed_everything, stopped_before_training)
catch_signals_at_start(__name__)            # a stop signal while TensorFlow loads (seconds) is kept, not lost

os.environ.setdefault("KERAS_BACKEND", "tensorflow")      # Keras 3 on TensorFlow; set before importing keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")        # no TensorFlow start-up chatter
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from environment import ACTIONS, MAX_STEPS, RENDER_DELAY, STATE_SIZE, make_env, remember, write_walk  # noqa: E402
from artefacts import TrainingArtefacts, stored_facts  # noqa: E402

NAME = "reinforce"
DESCRIPTION = "REINFORCE on the moving-obstacle grid world"      # --help and the score graph's title
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
    # compiled Keras call costs about 350 and model.predict about 45000. Same numbers as self.model(state),
    # in float64: the huge weights of a diverging run (--learning-rate 1e30) give no NaN before the loss shows it.
    def policy(self, state):
        w1, b1, w2, b2, w3, b3 = self.weights
        hidden = np.maximum(state @ w1 + b1, 0.0)
        hidden = np.maximum(hidden @ w2 + b2, 0.0)
        logits = (hidden @ w3 + b3).astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        return probabilities / probabilities.sum()

    # The numpy copy of the network's weights that policy uses (after building, loading or training).
    def refresh_weights(self):
        self.weights = [np.array(weight, dtype=np.float64) for weight in self.model.get_weights()]

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


# ---- training: the book's loop ----
# Fills `scores` (after those of a run resumed with --load) in place; returns early on a stop or a loss gone NaN.
def train(env, agent, episodes, scores, writer, save, stop):
    for episode in range(len(scores) + 1, len(scores) + episodes + 1):
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
        loss = stop.check_finite(agent.train_model())       # NaN or inf: the run stops, keeping its last checkpoint
        if not finite(agent.weights):                       # (a step too large for float32 gives inf weights)
            stop.check_finite(float("inf"), "a weight")
        scores.append(score)
        print(f"episode: {episode} | score: {score:.1f} | steps: {env.counter}{'' if done else ' | truncated'}")
        log_scalars(writer, episode, score=score, steps=env.counter, loss=loss)
        if episode % SAVE_EVERY == 0:
            save(scores)


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


# ---- the command line: arguments, then training or watching ----
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=f"{DESCRIPTION} (the book's chapter 5).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--episodes", type=positive_int, default=None, metavar="N",
                        help=f"episodes to train, or to play with --play (None: {EPISODES} to train, "
                             f"{PLAY_EPISODES} to play)")
    add_seed_argument(parser)
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=None,
                        help="show the grid window (None: when a display is available)")
    parser.add_argument("--render-delay", type=non_negative, default=RENDER_DELAY, metavar="SECONDS",
                        help="seconds per step while rendering")
    parser.add_argument("--save-dir", type=save_folder, default=HERE, metavar="DIR",
                        help="artefacts go to DIR/save_model, DIR/save_graph, DIR/summary")
    add_watching_arguments(parser, TRAINED, "go on from these weights and the run they store (training; Adam "
                           "starts afresh), or the weights to play with --play (None: train from scratch)")
    parser.add_argument("--max-steps", type=positive_int, default=MAX_STEPS, metavar="N",
                        help="episode cap in steps, a time limit, not a terminal state")
    parser.add_argument("--discount-factor", type=probability, default=DISCOUNT_FACTOR, help="gamma")
    parser.add_argument("--learning-rate", type=positive_float, default=LEARNING_RATE, help="Adam step size")
    return parse_arguments(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    stop = StopFlag()                           # from here on, Ctrl-C, kill and a closed terminal only raise this flag
    seed_everything(args.seed)                  # Python's random, numpy and Keras (TensorFlow)

    agent = ReinforceAgent(STATE_SIZE, len(ACTIONS), discount_factor=args.discount_factor,
                           learning_rate=args.learning_rate)
    if args.play:
        load_weights(agent.model, args.load or TRAINED, f"train with `python {Path(__file__).name}` first")
    elif args.load:
        load_weights(agent.model, args.load, "pass a file saved by this script")
    agent.refresh_weights()
    facts = stored_facts(args)                  # artefacts.py: where the run saved in --load stopped ({}: none)
    env = make_env(args.render is not False, args.render_delay, args.max_steps)

    if args.play:
        walk = frames_for(args.record)          # --record: a list for the cells visited, else None
        scores, reached = play(env, agent, args.episodes or PLAY_EPISODES, stop, walk)
        env.close()
        write_walk(args.record, walk)           # --record: the GIF of what was played (environment.py)
        report_scores(scores, stop, digits=2, before_mean=[f"goal reached: {reached} of {len(scores)}"])
        return

    if stop.requested:
        env.close()
        stopped_before_training()
    run = TrainingArtefacts(agent, args, NAME, DESCRIPTION, facts, stop)    # artefacts.py
    train(env, agent, args.episodes or EPISODES, run.scores, run.writer, run.save, stop)
    env.close()
    run.save(run.scores, final=True)            # once more at the end, or once after a stop signal
    run.report()


if __name__ == "__main__":
    main()
