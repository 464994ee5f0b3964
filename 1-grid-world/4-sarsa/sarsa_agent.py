"""SARSA on the grid world (파이썬과 케라스로 배우는 강화학습, 4장 그리드월드와 큐러닝: 살사).

The agent learns an action-value table Q(s, a) online, one update after every step, from the five
things that give the method its name, (s, a, r, s', a'), where a' is the action it REALLY takes next:

    Q(s, a) <- Q(s, a) + alpha * (r + gamma * Q(s', a') - Q(s, a))
    (the target is r alone when s' ends the episode: a terminal state is worth 0)

It acts epsilon-greedily on Q (ties among the best actions broken at random), so it learns the value of
the policy it follows, exploration included: on-policy temporal-difference control.

With the book's values, 1000 episodes give a greedy path that reaches the circle without touching a
triangle in every seed tried (50 + 10), in the shortest 6 moves in about 9 seeds of 10; in the others
it takes an 8-move detour that more episodes do not quickly undo, because alpha = 0.01 learns slowly
in the cells that only exploration visits (measured with benchmarks/grid_tabular.py).

    python sarsa_agent.py                  # watch it learn (headless when there is no display)
    python sarsa_agent.py --no-render --seed 1

At the end Q is saved to save_model/sarsa_q_table.npy (under --save-dir): a numpy array of shape (5, 5, 4)
indexed [row, col, action], actions in the book's order up, down, left, right. `numpy.load` reads it.
Ctrl-C, `kill` or a closed terminal stops the run between two steps; it saves Q the same way, exit 130.
The world, its window and the greedy walk: environment.py; jobs every chapter shares: plumbing.py (skip it).
"""
import argparse
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent      # every path resolves against this folder, not the cwd
sys.path.insert(0, str(HERE))               # this folder's environment.py and plumbing.py
from plumbing import (NEVER, StopFlag, add_seed_argument, catch_signals_at_start, ensure_writable,  # noqa: E402
                      finish, gif_path, headless_unless_display, keep_previous, non_negative, positive_int,
                      probability, save_folder, seed_everything, stopped_before_training)
catch_signals_at_start(__name__)            # Ctrl-C, kill or a closed terminal from here on: exit 130 in one line
import numpy as np  # noqa: E402
from environment import ACTIONS, HEIGHT, RENDER_DELAY, WIDTH, make_env, save_table, show_greedy_path  # noqa: E402

# ---- hyperparameters (the book's values) ----
EPISODES = 1000
LEARNING_RATE = 0.01      # alpha, the step size
DISCOUNT_FACTOR = 0.9     # gamma
EPSILON = 0.1             # probability of a random action


class SARSAgent:
    def __init__(self, actions, learning_rate=LEARNING_RATE, discount_factor=DISCOUNT_FACTOR, epsilon=EPSILON):
        self.actions = actions
        self.learning_rate = learning_rate
        self.discount_factor = discount_factor
        self.epsilon = epsilon
        # Q(s, a) of every cell, indexed [row, col, action] = [y, x, action]; zeros, like the book
        self.q_table = np.zeros((HEIGHT, WIDTH, len(actions)))

    # Update Q(s, a) from one step (s, a, r, s', a'). Called after every step, once a' is chosen.
    def learn(self, state, action, reward, next_state, next_action, done):
        x, y = state
        next_x, next_y = next_state
        current_q = self.q_table[y, x, action]
        next_q = 0.0 if done else self.q_table[next_y, next_x, next_action]
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


# The book's training loop. The next action is chosen BEFORE learning, and is the one taken next.
# Between two steps it looks at the stop flag (Ctrl-C or kill) and returns early.
def train(env, agent, episodes, stop=NEVER, quiet=False):
    for episode in range(episodes):
        state = env.reset()
        action = agent.get_action(state)
        score, steps, done = 0, 0, False
        while not done:
            if stop.requested:
                return
            next_state, reward, done = env.step(action)
            next_action = None if done else agent.get_action(next_state)
            agent.learn(state, action, reward, next_state, next_action, done)
            state, action = next_state, next_action
            score += reward
            steps += 1
            env.print_value_all(agent.q_table)     # does nothing headless
        if not quiet:
            print(f"episode: {episode} | score: {score:.1f} | steps: {steps}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="SARSA on the 5x5 grid world (the book's chapter 4).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--episodes", type=positive_int, default=EPISODES, help="episodes to train")
    add_seed_argument(parser, help="random seed; None: a different run every time")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=None,
                        help="show the grid window; None: when a display is available")
    parser.add_argument("--render-delay", type=non_negative, default=RENDER_DELAY,
                        help="seconds per step while rendering")
    parser.add_argument("--save-dir", type=save_folder, default=HERE, help="the table goes to SAVE_DIR/save_model")
    parser.add_argument("--learning-rate", type=probability, default=LEARNING_RATE, help="step size alpha")
    parser.add_argument("--discount-factor", type=probability, default=DISCOUNT_FACTOR, help="gamma")
    parser.add_argument("--epsilon", type=probability, default=EPSILON, help="probability of a random action")
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif",
                        help="after the run, save the greedy path from the start as an animated GIF (no window needed)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    stop = StopFlag()                           # from here on Ctrl-C and kill only raise stop.requested
    save_path = args.save_dir / "save_model" / "sarsa_q_table.npy"
    render = headless_unless_display(args.render is not False)    # no screen: headless, after a note
    ensure_writable(save_path.parent, *([args.record.parent.resolve()] if args.record is not None else []))
    seed_everything(args.seed)                  # random and numpy: the same seed, the same table

    env = make_env(render, args.render_delay)
    agent = SARSAgent(actions=list(range(env.n_actions)), learning_rate=args.learning_rate,
                      discount_factor=args.discount_factor, epsilon=args.epsilon)
    if stop.requested:
        env.close()
        stopped_before_training()
    keep_previous([save_path])                  # an earlier run's table becomes sarsa_q_table.previous.npy

    train(env, agent, args.episodes, stop)
    env.close()
    save_table(agent.q_table, save_path, f"Q table (row, col, action: {', '.join(ACTIONS)})", stop)
    # Watching, unless stopped: the greedy policy of the learned Q (the first best action on ties).
    if not stop.requested:
        show_greedy_path(env, lambda state: int(np.argmax(agent.q_table[state[1], state[0]])), args.record)
    finish(stop)                                # exit 130 after a stop signal, also one during a save


if __name__ == "__main__":
    main()
