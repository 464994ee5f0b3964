"""Watch a trained DQN play Breakout (the book's play_dqn_model.py).

Loads save_model/breakout_dqn_trained.weights.h5 (or --load PATH) into the DQNAgent of breakout_dqn.py
and plays with epsilon 0.01, as the book does: a little randomness keeps a deterministic emulator from
replaying the same game forever. FIRE relaunches the ball after a lost life. Nothing is learned and nothing
is written. The playing loop is breakout_dqn.py's (`play_main`, also run by `breakout_dqn.py --play`).

Run:  python 3-atari/1-breakout-dqn/play_dqn_model.py --episodes 10 --no-render
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # this folder's breakout_dqn.py

from breakout_dqn import (PLAY_EPISODES, PLAY_EPSILON, TRAINED, add_precision_argument, add_record_argument,
                          play_main, positive_int, probability)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Play Breakout with trained DQN weights (no learning).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--load", type=Path, default=TRAINED, help="weights to play with")
    parser.add_argument("--episodes", type=positive_int, default=PLAY_EPISODES, help="games to play")
    parser.add_argument("--epsilon", type=probability, default=PLAY_EPSILON, help="chance of a random action")
    parser.add_argument("--max-episode-steps", type=positive_int, default=None,
                        help="end a game after this many agent steps (None: the game's own limit)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (None: random)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="show the game window")
    add_precision_argument(parser)
    add_record_argument(parser)
    args = parser.parse_args(argv)
    if args.seed is not None and not 0 <= args.seed < 2 ** 32:
        parser.error(f"argument --seed: must be between 0 and 2**32 - 1, got {args.seed}")
    return args


def main(argv=None):
    args = parse_args(argv)
    play_main(args.load, args.episodes, args.epsilon, args.max_episode_steps, args.render, args.seed, args.precision,
              args.record)


if __name__ == "__main__":
    main()
