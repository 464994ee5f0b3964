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

sys.path.insert(0, str(Path(__file__).resolve().parent))   # this folder's breakout_dqn.py and plumbing.py

from plumbing import (add_precision_argument, add_seed_argument, catch_signals_at_start, gif_path, parse_arguments,
                      positive_int, probability)

catch_signals_at_start(__name__)      # before TensorFlow loads (seconds): a stop signal then ends the games at once
from breakout_dqn import PLAY_EPISODES, PLAY_EPSILON, TRAINED, play_main  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Play Breakout with trained DQN weights (no learning).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--load", type=Path, default=TRAINED, help="weights to play with")
    parser.add_argument("--episodes", type=positive_int, default=PLAY_EPISODES, help="games to play")
    parser.add_argument("--epsilon", type=probability, default=PLAY_EPSILON, help="chance of a random action")
    parser.add_argument("--max-episode-steps", type=positive_int, default=None,
                        help="end a game after this many agent steps (None: the game's own limit)")
    add_seed_argument(parser, help="random seed (None: random)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="show the game window")
    add_precision_argument(parser)
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif",
                        help="save the games played as an animated GIF, in colour (no window needed; "
                             "--episodes 1 keeps it short)")
    return parse_arguments(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    play_main(args.load, args.episodes, args.epsilon, args.max_episode_steps, args.render, args.seed, args.precision,
              args.record)


if __name__ == "__main__":
    main()
