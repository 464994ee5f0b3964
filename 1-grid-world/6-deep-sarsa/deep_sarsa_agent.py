"""Deep SARSA on the moving-obstacle grid world (파이썬과 케라스로 배우는 강화학습, 5장 근사함수: 딥살사).

The Q table of chapter 4 cannot follow obstacles that move, so a small neural network takes its place:
it reads the 15-number state and outputs Q(s, a) for the 5 actions. After every step the network takes
one Adam step toward the SARSA target of that step,

    y = r + gamma * Q(s', a')        (y = r when s' is the goal: a terminal state is worth 0)

where a' is the action the agent really takes next, chosen epsilon-greedily before the update. The loss is
the book's mean squared error over the 5 outputs, with the target vector = Q(s) except entry a, which is y:

    L = (1/5) * (y - Q(s, a))^2

Epsilon starts at 1.0 and is multiplied by 0.9999 at every training step, down to 0.01.

Decisions (differences from the book's 2017 code; see the README):
  - The next action a' in the target is the one the agent then takes (the original drew a second, fresh
    action to move with, so its update was not SARSA).
  - environment.py: the obstacles' clock starts again with every episode, and episodes stop after
    --max-steps steps; that time limit is not terminal, so the last update still bootstraps from Q(s', a').
  - The score graph is saved with the weights (every 100 episodes, at the end, on Ctrl-C) instead of after
    every episode: one PNG costs more time than a whole episode here.

    python deep_sarsa_agent.py                         # train 1000 episodes (window if there is a display)
    python deep_sarsa_agent.py --no-render --seed 1    # headless, reproducible
    python deep_sarsa_agent.py --play                  # watch the shipped trained agent, greedily
    tensorboard --logdir summary                       # score, steps, epsilon, loss per episode

Artefacts (under --save-dir, default this folder): save_model/deep_sarsa.weights.h5 (Keras 3 weights),
save_graph/deep_sarsa.png, summary/deep_sarsa/ (TensorBoard).
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

NAME = "deep_sarsa"

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

    # Q(state, .) computed with numpy on a copy of the current weights: about 5 microseconds, where a
    # compiled Keras call costs about 350 and model.predict about 45000. Same numbers as self.model(state).
    def q_values(self, state):
        w1, b1, w2, b2, w3, b3 = self.numpy_weights
        hidden = np.maximum(state @ w1 + b1, 0.0)
        hidden = np.maximum(hidden @ w2 + b2, 0.0)
        return hidden @ w3 + b3

    def refresh_weights(self):
        self.numpy_weights = [np.array(weight) for weight in self.model.get_weights()]

    # One SARSA update from (s, a, r, s', a'), then decay epsilon. Called after every step, once a' is
    # chosen. Returns the loss (measured before the update).
    def train_model(self, state, action, reward, next_state, next_action, done):
        self.epsilon = max(self.epsilon_min, self.epsilon * self.epsilon_decay)
        states = tf.constant(np.stack([state, next_state]), dtype=tf.float32)
        sample = tf.constant([action, reward, next_action, float(done)], dtype=tf.float32)
        loss, weights = self._train_step(states, sample)
        self.numpy_weights = [weight.numpy() for weight in weights]
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
# `scores` is filled in place, so that an interrupted run still has them to save.
def train(env, agent, episodes, scores, writer, save):
    for episode in range(1, episodes + 1):
        state = env.reset()
        action = agent.get_action(state)
        score, losses, done = 0.0, [], False
        while not (done or env.truncated):
            next_state, reward, done = env.step(action)
            next_action = agent.get_action(next_state)       # a': chosen now, and taken next
            losses.append(agent.train_model(state, action, reward, next_state, next_action, done))
            state, action = next_state, next_action
            score += reward
        scores.append(score)
        ending = "" if done else " | truncated"
        print(f"episode: {episode} | score: {score:.1f} | steps: {env.counter} | "
              f"epsilon: {agent.epsilon:.3f}{ending}")
        log_scalars(writer, episode, score=score, steps=env.counter, epsilon=agent.epsilon,
                    loss=np.mean(losses))
        if episode % SAVE_EVERY == 0:
            save(scores)


# ---- playing: the trained network, greedily (argmax Q), no learning ----
# The world has no randomness and greedy play none either, so every episode here is the same one.
def play(env, agent, episodes):
    agent.epsilon = 0.0
    scores, reached = [], 0
    for episode in range(1, episodes + 1):
        state = env.reset()
        score, done = 0.0, False
        while not (done or env.truncated):
            state, reward, done = env.step(agent.get_action(state))
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
    axes.set_title("Deep SARSA on the moving-obstacle grid world")
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
        description="Deep SARSA on the moving-obstacle grid world (the book's chapter 5).")
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
    parser.add_argument("--epsilon", type=probability, default=None,
                        help=f"starting epsilon (default {EPSILON}; {EPSILON_LOADED} with --load)")
    parser.add_argument("--epsilon-decay", type=probability, default=EPSILON_DECAY,
                        help="epsilon is multiplied by this after every training step (default %(default)s)")
    parser.add_argument("--epsilon-min", type=probability, default=EPSILON_MIN,
                        help="epsilon floor (default %(default)s)")
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
    if args.epsilon is None:
        args.epsilon = EPSILON_LOADED if args.load else EPSILON
    agent = DeepSARSAgent(env.state_size, env.action_size, epsilon=args.epsilon,
                          discount_factor=args.discount_factor, learning_rate=args.learning_rate,
                          epsilon_decay=args.epsilon_decay, epsilon_min=args.epsilon_min)

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
