"""Watch (or measure) the A3C Breakout agent: load the trained actor-critic and play greedily.

The network and the playing loop come from breakout_a3c.py (`play_main`, also run by `breakout_a3c.py --play`),
the games from environment.py, and the weights file says which preprocessing they were trained with (the book's,
or the vector environment's of --fast), so what is played is exactly what was trained. The action is
argmax_a π(a|s). With the book's preprocessing each game starts with a random 1..30 FIREs (without them every
greedy game would be the same game) and FIRE is pressed after every lost life; with the vector environment's, one
FIRE and up to 29 single-frame NOOPs, and the agent relaunches the ball itself.
The score is the game's real score over all five lives (rewards are neither clipped nor changed).

Run:  python 3-atari/2-breakout-a3c/play_a3c_model.py --episodes 10 --no-render
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))   # this folder's breakout_a3c.py
from plumbing import add_precision_argument, add_seed_argument, catch_signals_at_start, gif_path, positive_int
catch_signals_at_start(__name__)    # Ctrl-C, kill or a closed terminal while TensorFlow loads: exit 130, one line

from a3c_options import AUTO_BFLOAT16, RECORD_HELP
from breakout_a3c import MAX_EPISODE_STEPS, TRAINED, play_main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Play Breakout greedily with the trained A3C agent.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--episodes", type=positive_int, default=10, help="games to play")
    parser.add_argument("--load", type=Path, default=TRAINED, help="weights to play")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="show the game in a window")
    parser.add_argument("--max-episode-steps", type=positive_int, default=MAX_EPISODE_STEPS,
                        help="end a game after this many agent steps (a greedy agent may stall)")
    parser.add_argument("--sample", action="store_true",
                        help="sample actions from π(a|s) as in training instead of playing greedily")
    add_seed_argument(parser, help="random seed (None: random)")
    add_precision_argument(parser, AUTO_BFLOAT16)
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif", help=RECORD_HELP)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    play_main(args.load, args.episodes, args.render, args.seed, args.max_episode_steps, args.sample, args.precision,
              args.record)


if __name__ == "__main__":
    main()
