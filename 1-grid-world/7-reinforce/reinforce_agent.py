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

Decisions (differences from the book's 2017 code; see the README):
  - Returns are normalised with (G - mean) / (std + 1e-8): the original divided by the bare std.
  - environment.py: the obstacles' clock starts again with every episode, and episodes stop after
    --max-steps steps (a time limit: the truncated episode is learned from like any other).
  - The score graph is saved with the weights (every 100 episodes, at the end, on Ctrl-C) instead of after
    every episode: one PNG costs more time than a whole episode here.

    python reinforce_agent.py                         # train 2500 episodes (window if there is a display)
    python reinforce_agent.py --no-render --seed 1    # headless, reproducible
    python reinforce_agent.py --play                  # watch the shipped trained agent, greedily (argmax)
    tensorboard --logdir summary                      # score, steps, loss per episode

Artefacts (under --save-dir, default this folder): save_model/reinforce.weights.h5 (Keras 3 weights),
save_graph/reinforce.png, summary/reinforce/ (TensorBoard).
"""
import argparse
import os
import random
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
from environment import MAX_STEPS, RENDER_DELAY, Env  # noqa: E402

NAME = "reinforce"

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
        w1, b1, w2, b2, w3, b3 = self.numpy_weights
        hidden = np.maximum(state @ w1 + b1, 0.0)
        hidden = np.maximum(hidden @ w2 + b2, 0.0)
        logits = (hidden @ w3 + b3).astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        return probabilities / probabilities.sum()

    def refresh_weights(self):
        self.numpy_weights = [np.array(weight) for weight in self.model.get_weights()]

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
# `scores` is filled in place, so that an interrupted run still has them to save.
def train(env, agent, episodes, scores, writer, save):
    for episode in range(1, episodes + 1):
        state = env.reset()
        score, done = 0.0, False
        while not (done or env.truncated):
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


# ---- playing: the trained policy, greedily (the most probable action), no learning ----
# The world has no randomness and greedy play none either, so every episode here is the same one.
def play(env, agent, episodes):
    scores, reached = [], 0
    for episode in range(1, episodes + 1):
        state = env.reset()
        score, done = 0.0, False
        while not (done or env.truncated):
            state, reward, done = env.step(int(np.argmax(agent.policy(state))))
            score += reward
        scores.append(score)
        reached += done
        print(f"episode: {episode} | score: {score:.1f} | steps: {env.counter} | "
              f"{'goal reached' if done else 'step cap hit'}")
    print(f"goal reached: {reached} of {episodes}")
    print(f"mean score: {np.mean(scores):.2f} over {episodes} episodes")


# ---- plumbing: saving, loading, arguments (the same in every chapter; safe to skip) ----
def atomic_write(path, write):
    """Call write(tmp) on a temp file beside `path`, then move it into place: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")   # keeps the suffix (.weights.h5 / .png)
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


# TensorBoard logs without the tensorboard package (TensorFlow no longer installs it): tf.summary.write
# with the metadata that TensorBoard's scalar and text plugins look for. `pip install tensorboard` to view.
def summary_metadata(plugin):
    plugin_data = tf.compat.v1.SummaryMetadata.PluginData(plugin_name=plugin)
    return tf.compat.v1.SummaryMetadata(plugin_data=plugin_data)


def log_scalars(writer, step, **values):
    with writer.as_default(step=step):
        for tag, value in values.items():
            tf.summary.write(tag, tf.constant(value, tf.float32), metadata=summary_metadata("scalars"))


def log_text(writer, tag, text):
    with writer.as_default(step=0):
        tf.summary.write(tag, tf.constant(text), metadata=summary_metadata("text"))


def save_graph(scores, path):
    import matplotlib.pyplot as plt      # the backend is chosen in main()
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.plot(range(1, len(scores) + 1), scores, "b", linewidth=0.8)
    axes.set_xlabel("episode")
    axes.set_ylabel("score")
    axes.set_title("REINFORCE on the moving-obstacle grid world")
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=80))
    plt.close(figure)


def display_available():
    try:
        import tkinter
    except ImportError:
        return False
    try:
        tkinter.Tk().destroy()
        return True
    except tkinter.TclError:
        return False


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def probability(text):
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def non_negative(text):
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="REINFORCE on the moving-obstacle grid world (the book's chapter 5).")
    parser.add_argument("--episodes", type=positive_int, default=None, metavar="N",
                        help=f"episodes to train (default {EPISODES}) or to play (default {PLAY_EPISODES})")
    parser.add_argument("--seed", type=int, default=None, metavar="N", help="random seed (default: a random run)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=None,
                        help="show the grid window (default: when a display is available)")
    parser.add_argument("--render-delay", type=non_negative, default=RENDER_DELAY, metavar="SECONDS",
                        help="seconds per step while rendering (default %(default)s)")
    parser.add_argument("--save-dir", type=Path, default=HERE, metavar="DIR",
                        help="artefacts go to SAVE_DIR/save_model, save_graph, summary (default: this folder)")
    parser.add_argument("--load", type=Path, default=None, metavar="PATH",
                        help="start from these weights (training; Adam starts afresh) or play them (--play)")
    parser.add_argument("--play", action="store_true",
                        help=f"no training: play greedily with --load or save_model/{NAME}_trained.weights.h5")
    parser.add_argument("--max-steps", type=positive_int, default=MAX_STEPS, metavar="N",
                        help="episode cap in steps, a time limit, not a terminal state (default %(default)s)")
    parser.add_argument("--discount-factor", type=probability, default=DISCOUNT_FACTOR,
                        help="gamma (default %(default)s)")
    parser.add_argument("--learning-rate", type=non_negative, default=LEARNING_RATE,
                        help="Adam step size (default %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model_dir, graph_dir = args.save_dir / "save_model", args.save_dir / "save_graph"
    weights_path, graph_path = model_dir / f"{NAME}.weights.h5", graph_dir / f"{NAME}.png"
    if not args.play:
        ensure_writable(model_dir)
        ensure_writable(graph_dir)
    if args.render is not False and not display_available():
        print("no display found: running headless (pass --render on a machine with a display)")
        args.render = False
    args.render = args.render is not False
    import matplotlib
    if not args.render:
        matplotlib.use("Agg")

    if args.seed is not None:                   # seeding: one visible block
        random.seed(args.seed)
        np.random.seed(args.seed)
        keras.utils.set_random_seed(args.seed)

    env = Env(render=args.render, delay=args.render_delay, max_steps=args.max_steps)
    agent = ReinforceAgent(env.state_size, env.action_size, discount_factor=args.discount_factor,
                           learning_rate=args.learning_rate)

    if args.play:
        path = args.load or HERE / "save_model" / f"{NAME}_trained.weights.h5"
        load_weights(agent.model, path, f"train with `python {Path(__file__).name}` first")
        agent.refresh_weights()
        try:
            play(env, agent, args.episodes or PLAY_EPISODES)
        except KeyboardInterrupt:
            env.close()
            sys.exit(130)
        env.close()
        return

    if args.load:
        load_weights(agent.model, args.load, "pass a file saved by this script")
        agent.refresh_weights()
    writer = tf.summary.create_file_writer(str(args.save_dir / "summary" / NAME))
    log_text(writer, "hyperparameters",
             "\n".join(f"    {key}: {value}" for key, value in sorted(vars(args).items())))

    def save(scores):
        atomic_write(weights_path, agent.model.save_weights)
        save_graph(scores, graph_path)
        writer.flush()

    scores = []
    try:
        train(env, agent, args.episodes or EPISODES, scores, writer, save)
    except KeyboardInterrupt:
        env.close()
        save(scores)
        print(f"interrupted: weights saved to {weights_path}, graph to {graph_path}")
        sys.exit(130)
    env.close()
    save(scores)
    print(f"weights saved to {weights_path}")
    print(f"graph saved to {graph_path}")
    print(f"TensorBoard: tensorboard --logdir {args.save_dir / 'summary'}")


if __name__ == "__main__":
    main()
