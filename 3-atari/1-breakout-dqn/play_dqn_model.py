"""Watch a trained DQN play Breakout (the book's play_dqn_model.py).

Loads save_model/breakout_dqn_trained.weights.h5 (or --load PATH) into the DQNAgent of breakout_dqn.py
and plays with epsilon 0.01, as the book does: a little randomness keeps a deterministic emulator from
replaying the same game forever. FIRE relaunches the ball after a lost life. Nothing is learned.

Run:  python 3-atari/1-breakout-dqn/play_dqn_model.py --episodes 10 --no-render
"""
import argparse
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))                    # import the agent from this folder's breakout_dqn.py

import keras
import numpy as np
from breakout_dqn import (ALE_ACTION, FIRE, DQNAgent, display_available, load_weights, make_env, new_history,
                          next_history_of, positive_int, pre_processing, start_game)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Play Breakout with trained DQN weights (no learning).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--load", type=Path, default=HERE / "save_model" / "breakout_dqn_trained.weights.h5",
                        help="weights to play with")
    parser.add_argument("--episodes", type=positive_int, default=10, help="games to play")
    parser.add_argument("--epsilon", type=float, default=0.01, help="chance of a random action")
    parser.add_argument("--max-episode-steps", type=positive_int, default=None,
                        help="end a game after this many agent steps (default: the game's own limit)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="show the game window")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if args.seed is not None:
        random.seed(args.seed)
        np.random.seed(args.seed)
        keras.utils.set_random_seed(args.seed)

    agent = DQNAgent(memory_size=1)              # playing needs no replay memory
    load_weights(agent.model, args.load,
                 "train one with: python 3-atari/1-breakout-dqn/breakout_dqn.py (weights go to save_model/)")
    agent.epsilon = args.epsilon
    if args.render and not display_available():
        print("no display found: running headless (pass --render on a machine with a display)")
        args.render = False
    env = make_env(args.render)

    scores = []
    for episode in range(1, args.episodes + 1):
        observe, lives = start_game(env, agent.no_op_steps, seed=args.seed if episode == 1 else None)
        history = new_history(pre_processing(observe))
        done, dead, score, step = False, False, 0.0, 0
        while not done:
            step += 1
            action = FIRE if dead else agent.get_action(history)[0]
            observe, reward, terminated, truncated, info = env.step(ALE_ACTION[action])
            done = terminated or truncated or (args.max_episode_steps is not None
                                               and step >= args.max_episode_steps)
            next_state = pre_processing(observe)
            dead = info["lives"] < lives
            lives = info["lives"]
            score += reward
            history = new_history(next_state) if dead else next_history_of(history, next_state)
        scores.append(score)
        print(f"episode: {episode} | score: {score:.1f} | steps: {step}", flush=True)
    env.close()
    print(f"mean score: {np.mean(scores):.1f} over {len(scores)} episodes")
