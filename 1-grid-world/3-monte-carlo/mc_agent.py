"""Monte Carlo control on the grid world (파이썬과 케라스로 배우는 강화학습, 4장 그리드월드와 큐러닝: 몬테카를로).

The agent learns a state-value table V from whole episodes. Each step k is remembered as (S_k, R_k): the state
entered and the reward for entering it. After the episode, walking backwards, the return of EVERY step is

    G_k = R_k + gamma * G_{k+1}        (G = 0 after the last step; the book's G_t = R_{t+1} + gamma * G_{t+1})

and V of each state visited moves toward the return of its FIRST visit in the episode:

    V(s) <- V(s) + alpha * (G(s) - V(s))

So V(s) is the value of ARRIVING in s, entry reward included (the circle tends to +100, a triangle to -100): what
the one-step look-ahead needs, as the agent does not know the rewards. It acts epsilon-greedily: the best action
leads to the neighbour with the highest V (a move into the border "leads" to the current cell), ties at random.

Book fix: the book's update skipped the reward and the discount of every step that entered an already
visited state (neither first- nor every-visit MC, a known bug), and multiplied every return by one more
gamma; here G runs over every step, and each state learns the return of its first visit.

    python mc_agent.py                     # watch it learn (headless when there is no display)
    python mc_agent.py --no-render --seed 1

At the end V is saved to save_model/mc_value_table.npy (under --save-dir): a numpy array of shape (5, 5)
indexed [row, col]. `numpy.load` reads it. Ctrl-C, `kill` or a closed terminal stops the run between two
steps (the unfinished episode is not learned from); it saves V the same way and exits with status 130.
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
from environment import HEIGHT, RENDER_DELAY, WIDTH, make_env, save_table, show_greedy_path  # noqa: E402

# ---- hyperparameters (the book's values) ----
EPISODES = 1000
LEARNING_RATE = 0.01      # alpha, the step size
DISCOUNT_FACTOR = 0.9     # gamma
EPSILON = 0.1             # probability of a random action


class MCAgent:
    def __init__(self, actions, learning_rate=LEARNING_RATE, discount_factor=DISCOUNT_FACTOR, epsilon=EPSILON):
        self.actions = actions
        self.learning_rate = learning_rate
        self.discount_factor = discount_factor
        self.epsilon = epsilon
        # V of every cell, indexed [row, col] = [y, x]; zeros, like the book
        self.value_table = np.zeros((HEIGHT, WIDTH))
        self.samples = []                   # this episode's (state entered, reward, done)

    # Remember one step. Called after every step; the learning waits for the end of the episode.
    def save_sample(self, state, reward, done):
        self.samples.append((tuple(state), reward, done))

    # First-visit MC update from the whole episode. Called once the episode has ended.
    def update(self):
        first_visit_return = {}
        G = 0.0
        for state, reward, _ in reversed(self.samples):
            G = reward + self.discount_factor * G
            first_visit_return[state] = G   # walking backwards, the first visit is written last
        for (x, y), G in first_visit_return.items():
            self.value_table[y, x] += self.learning_rate * (G - self.value_table[y, x])
        self.samples.clear()

    # Epsilon-greedy: a random action with probability epsilon, else one leading to the best neighbour (ties at random).
    def get_action(self, state):
        if random.random() < self.epsilon:
            return random.choice(self.actions)
        return arg_max(self.possible_next_state(state))

    # V of the cell each action leads to (up, down, left, right); a move into the border stays put.
    def possible_next_state(self, state):
        x, y = state
        up, down = max(y - 1, 0), min(y + 1, HEIGHT - 1)      # the rows and columns of the neighbours,
        left, right = max(x - 1, 0), min(x + 1, WIDTH - 1)    # clipped at the border
        return self.value_table[[up, down, y, y], [x, x, left, right]]


def arg_max(values):
    best = np.flatnonzero(values == values.max())
    return int(random.choice(best))


# The book's training loop: play a whole episode, then learn from it; a stop (Ctrl-C, kill) drops the unfinished one.
def train(env, agent, episodes, stop=NEVER, quiet=False):
    for episode in range(episodes):
        state = env.reset()
        score, steps, done = 0, 0, False
        while not done:
            if stop.requested:
                agent.samples.clear()
                return
            action = agent.get_action(state)
            state, reward, done = env.step(action)
            agent.save_sample(state, reward, done)
            score += reward
            steps += 1
        agent.update()
        env.print_value_all(agent.value_table)     # does nothing headless
        if not quiet:
            print(f"episode: {episode} | score: {score:.1f} | steps: {steps}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Monte Carlo control on the 5x5 grid world (the book's chapter 4).",
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
    save_path = args.save_dir / "save_model" / "mc_value_table.npy"
    render = headless_unless_display(args.render is not False)    # no screen: headless, after a note
    ensure_writable(save_path.parent, *([args.record.parent.resolve()] if args.record is not None else []))
    seed_everything(args.seed)                  # random and numpy: the same seed, the same table

    env = make_env(render, args.render_delay)
    agent = MCAgent(actions=list(range(env.n_actions)), learning_rate=args.learning_rate,
                    discount_factor=args.discount_factor, epsilon=args.epsilon)
    if stop.requested:
        env.close()
        stopped_before_training()
    keep_previous([save_path])                  # an earlier run's table becomes mc_value_table.previous.npy

    train(env, agent, args.episodes, stop)
    env.close()
    save_table(agent.value_table, save_path, "V table (row, col)", stop)
    # Watching, unless stopped: the greedy look-ahead on the learned V (the first best action on ties).
    if not stop.requested:
        show_greedy_path(env, lambda state: int(np.argmax(agent.possible_next_state(state))), args.record)
    finish(stop)                                # exit 130 after a stop signal, also one during a save


if __name__ == "__main__":
    main()
