"""Q-learning on the grid world (파이썬과 케라스로 배우는 강화학습, 4장 그리드월드와 큐러닝: 큐러닝).

The agent learns an action-value table Q(s, a) online, one update after every step from (s, a, r, s'),
toward the value of the BEST next action, whatever action it takes next:

    Q(s, a) <- Q(s, a) + alpha * (r + gamma * max_a' Q(s', a') - Q(s, a))
    (the target is r alone when s' ends the episode: a terminal state is worth 0)

It acts epsilon-greedily on Q (ties among the best actions broken at random) but learns the value of the
greedy policy: off-policy temporal-difference control.

Book fix: the book's published code ended up with epsilon = 0.9 (90% random actions) after a half-applied
correction; the book's value, used here, is 0.1.

With the book's values, 1000 episodes give a greedy path that reaches the circle without touching a
triangle in every seed tried (50 + 10), in the shortest 6 moves in about 9 seeds of 10; in the others
it takes an 8-move detour that more episodes do not quickly undo, because alpha = 0.01 learns slowly
in the cells that only exploration visits (measured with benchmarks/grid_tabular.py).

    python q_learning_agent.py             # watch it learn (headless when there is no display)
    python q_learning_agent.py --no-render --seed 1

At the end Q is saved to save_model/q_learning_q_table.npy (under --save-dir): a numpy array of shape
(5, 5, 4) indexed [row, col, action], actions in the book's order up, down, left, right. `numpy.load` reads it.
"""
import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent      # every path resolves against this folder, not the cwd
sys.path.insert(0, str(HERE))               # this folder's environment.py
from environment import ACTIONS, HEIGHT, RENDER_DELAY, START, WIDTH, Env  # noqa: E402

# ---- hyperparameters (the book's values) ----
EPISODES = 1000
LEARNING_RATE = 0.01      # alpha, the step size
DISCOUNT_FACTOR = 0.9     # gamma
EPSILON = 0.1             # probability of a random action


class QLearningAgent:
    def __init__(self, actions, learning_rate=LEARNING_RATE, discount_factor=DISCOUNT_FACTOR,
                 epsilon=EPSILON):
        self.actions = actions
        self.learning_rate = learning_rate
        self.discount_factor = discount_factor
        self.epsilon = epsilon
        # Q(s, a) of every cell, indexed [row, col, action] = [y, x, action]; zeros, like the book
        self.q_table = np.zeros((HEIGHT, WIDTH, len(actions)))

    # Update Q(s, a) from one step (s, a, r, s'). Called after every step.
    def learn(self, state, action, reward, next_state, done):
        x, y = state
        next_x, next_y = next_state
        current_q = self.q_table[y, x, action]
        next_q = 0.0 if done else self.q_table[next_y, next_x].max()
        td_target = reward + self.discount_factor * next_q
        self.q_table[y, x, action] = current_q + self.learning_rate * (td_target - current_q)

    # Epsilon-greedy: a random action with probability epsilon, else a best one (ties broken at random,
    # so an untrained agent does not always walk into the same wall).
    def get_action(self, state):
        if random.random() < self.epsilon:
            return random.choice(self.actions)
        x, y = state
        return arg_max(self.q_table[y, x])


def arg_max(values):
    best = np.flatnonzero(values == values.max())
    return int(random.choice(best))


# The book's training loop: act, learn from the step, repeat until the episode ends.
def train(env, agent, episodes, quiet=False):
    for episode in range(episodes):
        state = env.reset()
        score, steps, done = 0, 0, False
        while not done:
            action = agent.get_action(state)
            next_state, reward, done = env.step(action)
            agent.learn(state, action, reward, next_state, done)
            state = next_state
            score += reward
            steps += 1
            env.print_value_all(agent.q_table)     # does nothing headless
        if not quiet:
            print(f"episode: {episode} | score: {score:.1f} | steps: {steps}")


# Follow the greedy action (the first best one on ties) from the start until the episode would end or
# a cell repeats (a deterministic policy that comes back to a cell loops for ever).
def greedy_path(q_table, env):
    state, path = list(START), [list(START)]
    while not env.reward_and_done(state)[1]:
        x, y = state
        state = env.state_after_action(state, int(np.argmax(q_table[y, x])))
        if state in path:
            return path + [state], "loops"
        path.append(state)
    ending = "reaches the circle" if env.reward_and_done(state)[0] > 0 else "ends on a triangle"
    return path, f"{ending} in {len(path) - 1} moves"


# ---- plumbing: arguments, saving, display detection (the same in every chapter; safe to skip) ----
def atomic_write(path, write):
    """Call write(tmp) on a temp file beside `path`, then move it into place: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
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
    parser = argparse.ArgumentParser(description="Q-learning on the 5x5 grid world (the book's chapter 4).")
    parser.add_argument("--episodes", type=positive_int, default=EPISODES, help="episodes to train")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a random run)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=None,
                        help="show the grid window (default: when a display is available)")
    parser.add_argument("--render-delay", type=non_negative, default=RENDER_DELAY,
                        help="seconds per step while rendering")
    parser.add_argument("--save-dir", type=Path, default=HERE,
                        help="the table goes to SAVE_DIR/save_model (default: this script's folder)")
    parser.add_argument("--learning-rate", type=probability, default=LEARNING_RATE, help="step size alpha")
    parser.add_argument("--discount-factor", type=probability, default=DISCOUNT_FACTOR, help="gamma")
    parser.add_argument("--epsilon", type=probability, default=EPSILON,
                        help="probability of a random action")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    save_path = args.save_dir / "save_model" / "q_learning_q_table.npy"
    if args.render is not False and not display_available():     # default or --render, but no screen
        print("no display found: running headless (pass --render on a machine with a display)")
        args.render = False
    args.render = args.render is not False
    ensure_writable(save_path.parent)

    if args.seed is not None:                   # seeding: one visible block
        random.seed(args.seed)
        np.random.seed(args.seed)

    env = Env(render=args.render, delay=args.render_delay)
    agent = QLearningAgent(actions=list(range(env.n_actions)), learning_rate=args.learning_rate,
                           discount_factor=args.discount_factor, epsilon=args.epsilon)

    def save():
        atomic_write(save_path, lambda tmp: np.save(tmp, agent.q_table))
        print(f"Q table (row, col, action: {', '.join(ACTIONS)}) saved to {save_path}")

    try:
        train(env, agent, args.episodes)
    except KeyboardInterrupt:
        print("interrupted: saving what has been learned so far")
        env.close()
        save()
        sys.exit(130)
    env.close()
    save()
    path, ending = greedy_path(agent.q_table, env)
    print("greedy path from the start (row, col): "
          + " -> ".join(f"({y}, {x})" for x, y in path) + f": {ending}")


if __name__ == "__main__":
    main()
