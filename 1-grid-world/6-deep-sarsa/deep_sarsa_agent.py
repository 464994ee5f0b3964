"""Deep SARSA on the moving-obstacle grid world (파이썬과 케라스로 배우는 강화학습, 5장 근사함수: 딥살사).

The Q table of chapter 4 cannot follow obstacles that move, so a small neural network takes its place:
it reads the 15-number state and outputs Q(s, a) for the 5 actions. After every step the network takes
one Adam step toward the SARSA target of that step,

    y = r + gamma * Q(s', a')        (y = r when s' is the goal: a terminal state is worth 0)

where a' is the action the agent really takes next, chosen epsilon-greedily before the update. The loss is
the book's mean squared error over the 5 outputs, with the target vector = Q(s) except entry a, which is y:

    L = (1/5) * (y - Q(s, a))^2

Epsilon starts at 1.0 and is multiplied by 0.9999 at every training step, down to 0.01.

Decisions (differences from the book's 2017 code; this folder's README.md lists them all):
  - The next action a' in the target is the one the agent then takes (the original drew a second, fresh
    action to move with, so its update was not SARSA).
  - environment.py: the obstacles' clock starts again with every episode, and episodes stop after
    --max-steps steps; that time limit is not terminal, so the last update still bootstraps from Q(s', a').
  - The graph is saved with the weights, every 100 episodes, at the end and on a stop (Ctrl-C, kill, a closed
    terminal: exit 130), not every episode; --load of a file saved here goes on with its episodes, epsilon, curve.

    python deep_sarsa_agent.py                         # train 1000 episodes (window if there is a display)
    python deep_sarsa_agent.py --no-render --seed 1    # headless, reproducible
    python deep_sarsa_agent.py --play                  # watch the shipped trained agent, greedily; writes nothing

environment.py holds the world and its drawing; artefacts.py what training saves under --save-dir
(save_model/deep_sarsa.weights.h5, save_graph/deep_sarsa.png, summary/deep_sarsa/); plumbing.py the shared jobs.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent      # every path resolves against this folder, not the cwd
sys.path.insert(0, str(HERE))               # this folder's environment.py, artefacts.py and plumbing.py
from plumbing import (StopFlag, add_seed_argument, add_watching_arguments, catch_signals_at_start,  # noqa: E402
                      frames_for, load_weights, log_scalars, non_negative, parse_arguments, positive_float,
                      positive_int, probability, report_scores, save_folder, seed_everything, stopped_before_training)
catch_signals_at_start(__name__)            # a stop signal while TensorFlow loads (seconds) is kept, not lost

os.environ.setdefault("KERAS_BACKEND", "tensorflow")      # Keras 3 on TensorFlow; set before importing keras
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")        # no TensorFlow start-up chatter
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from environment import ACTIONS, MAX_STEPS, RENDER_DELAY, STATE_SIZE, make_env, remember, write_walk  # noqa: E402
from artefacts import TrainingArtefacts, stored_facts  # noqa: E402

NAME = "deep_sarsa"
DESCRIPTION = "Deep SARSA on the moving-obstacle grid world"     # --help and the score graph's title
TRAINED = HERE / "save_model" / f"{NAME}_trained.weights.h5"     # the shipped weights, played by --play

# ---- hyperparameters (the book's values) ----
EPISODES = 1000
DISCOUNT_FACTOR = 0.99    # gamma
LEARNING_RATE = 0.001     # Adam
EPSILON = 1.0             # starting probability of a random action
EPSILON_LOADED = 0.05     # starting epsilon when training goes on from saved weights (the book's value)
EPSILON_DECAY = 0.9999    # epsilon *= this after every training step ...
EPSILON_MIN = 0.01        # ... down to this
SAVE_EVERY = 100          # episodes between saves of the weights and the graph
PLAY_EPISODES = 20        # default number of episodes for --play


# ---- the network: 15 numbers in, one Q-value per action out ----
def build_model(state_size, action_size):
    return keras.Sequential([
        keras.Input(shape=(state_size,)),
        keras.layers.Dense(30, activation="relu"),
        keras.layers.Dense(30, activation="relu"),
        keras.layers.Dense(action_size, activation="linear"),
    ])


# The on-policy target of one step: y = r + gamma * Q(s', a'), or r alone when s' is the goal.
# Works on numbers, numpy arrays and tensors alike (the compiled training step uses it).
def sarsa_target(reward, next_q, done, discount_factor):
    return reward + (1.0 - done) * discount_factor * next_q


class DeepSARSAgent:
    def __init__(self, state_size, action_size, epsilon=EPSILON, discount_factor=DISCOUNT_FACTOR,
                 learning_rate=LEARNING_RATE, epsilon_decay=EPSILON_DECAY, epsilon_min=EPSILON_MIN):
        self.state_size = state_size
        self.action_size = action_size
        # hyperparameters
        self.discount_factor = discount_factor
        self.learning_rate = learning_rate
        self.epsilon = epsilon
        self.epsilon_decay = epsilon_decay
        self.epsilon_min = epsilon_min

        self.model = build_model(state_size, action_size)
        self.optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        self.refresh_weights()

    # Epsilon-greedy: a random action with probability epsilon, else the best one by the network.
    # Called once per step, for the action the agent will really take.
    def get_action(self, state):
        if np.random.rand() < self.epsilon:
            return int(np.random.randint(self.action_size))
        return int(np.argmax(self.q_values(state)))

    # Q(state, .) = self.model(state), computed with numpy on a copy of the weights: about 6 microseconds, where
    # a compiled Keras call costs about 280 and model.predict about 63000 (benchmarks/grid_deep.py, BENCHMARKS.md).
    def q_values(self, state):
        w1, b1, w2, b2, w3, b3 = self.weights
        hidden = np.maximum(state @ w1 + b1, 0.0)
        hidden = np.maximum(hidden @ w2 + b2, 0.0)
        return hidden @ w3 + b3

    # The numpy copy of the network's weights that q_values uses (after building or loading the model).
    def refresh_weights(self):
        self.weights = [np.array(weight) for weight in self.model.get_weights()]

    # One SARSA update from (s, a, r, s', a'), then decay epsilon. Called after every step, once a' is
    # chosen. Returns the loss (measured before the update).
    def train_model(self, state, action, reward, next_state, next_action, done):
        self.epsilon = max(self.epsilon_min, self.epsilon * self.epsilon_decay)
        states = tf.constant(np.stack([state, next_state]), dtype=tf.float32)
        sample = tf.constant([action, reward, next_action, float(done)], dtype=tf.float32)
        loss, weights = self._train_step(states, sample)
        self.weights = [weight.numpy() for weight in weights]
        return float(loss)

    # The compiled part: target with the weights as they are, one Adam step, the new weights back out
    # (so that acting needs no second call). Tensors in: a Python float would recompile every time.
    @tf.function
    def _train_step(self, states, sample):
        action = tf.cast(sample[0], tf.int32)
        reward, next_action, done = sample[1], tf.cast(sample[2], tf.int32), sample[3]
        next_q = self.model(states[1:], training=False)[0, next_action]
        y = sarsa_target(reward, next_q, done, self.discount_factor)
        with tf.GradientTape() as tape:
            q = self.model(states[:1], training=True)[0]
            target = tf.where(tf.range(self.action_size) == action, y, tf.stop_gradient(q))
            loss = tf.reduce_mean(tf.square(target - q))
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        return loss, [tf.identity(weight.value) for weight in self.model.weights]


# ---- training: the book's loop ----
# Fills `scores` (after those of a run resumed with --load) in place; returns early on a stop or a loss gone NaN.
def train(env, agent, episodes, scores, writer, save, stop):
    for episode in range(len(scores) + 1, len(scores) + episodes + 1):
        state = env.reset()
        action = agent.get_action(state)
        score, losses, done = 0.0, [], False
        while not (done or env.truncated):
            if stop.requested:
                return
            next_state, reward, done = env.step(action)
            next_action = agent.get_action(next_state)       # a': chosen now, and taken next
            losses.append(stop.check_finite(agent.train_model(state, action, reward, next_state, next_action, done)))
            state, action = next_state, next_action
            score += reward
        scores.append(score)
        print(f"episode: {episode} | score: {score:.1f} | steps: {env.counter} | "
              f"epsilon: {agent.epsilon:.3f}{'' if done else ' | truncated'}")
        log_scalars(writer, episode, score=score, steps=env.counter, epsilon=agent.epsilon, loss=np.mean(losses))
        if episode % SAVE_EVERY == 0:
            save(scores)


# ---- playing: the trained network, greedily (argmax Q), no learning ----
# The world has no randomness and greedy play none either, so every episode here is the same one.
# Returns the scores of the games played to the end and how many reached the goal.
def play(env, agent, episodes, stop, walk=None):
    agent.epsilon = 0.0
    scores, reached = [], 0
    for episode in range(1, episodes + 1):
        state = env.reset()
        score, done = 0.0, False
        remember(walk, env)
        while not (done or env.truncated):
            if stop.requested:                    # Ctrl-C or kill: stop between two steps
                return scores, reached
            state, reward, done = env.step(agent.get_action(state))
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
    parser.add_argument("--epsilon", type=probability, default=None,
                        help=f"starting epsilon (None: {EPSILON}; with --load the one saved, else {EPSILON_LOADED})")
    parser.add_argument("--epsilon-decay", type=probability, default=EPSILON_DECAY,
                        help="epsilon is multiplied by this after every training step")
    parser.add_argument("--epsilon-min", type=probability, default=EPSILON_MIN, help="epsilon floor")
    return parse_arguments(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    stop = StopFlag()                           # from here on, Ctrl-C, kill and a closed terminal only raise this flag
    seed_everything(args.seed)                  # Python's random, numpy and Keras (TensorFlow)

    agent = DeepSARSAgent(STATE_SIZE, len(ACTIONS), discount_factor=args.discount_factor,
                          learning_rate=args.learning_rate, epsilon_decay=args.epsilon_decay,
                          epsilon_min=args.epsilon_min)             # epsilon: below, once --load is read
    if args.play:
        load_weights(agent.model, args.load or TRAINED, f"train with `python {Path(__file__).name}` first")
    elif args.load:
        load_weights(agent.model, args.load, "pass a file saved by this script")
    agent.refresh_weights()
    facts = stored_facts(args)                  # artefacts.py: where the run saved in --load stopped ({}: none)
    if args.epsilon is None:                    # that run's epsilon, else the book's values
        args.epsilon = facts.get("epsilon", EPSILON_LOADED if args.load else EPSILON)
    agent.epsilon = args.epsilon
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
