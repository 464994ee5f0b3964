"""The command line's option tables for breakout_a3c.py and play_a3c_model.py: not the chapter's lesson, safe to
skip while reading the book.

- `--fast`, a preset of the threads' settings measured fastest to a good score on a 2-core CPU, and the options
  whose default it changes (each one's default is the book's value, or --fast's; an option given explicitly wins);
- the precision option: whether --precision auto may pick bfloat16 for this network;
- the help of --record;
- the size of the rollouts the threads keep, checked against this machine's memory before anything is made.
This module imports no agent code (breakout_a3c.py passes it the book's values).
"""
import argparse

from plumbing import check_memory, positive_float, positive_int
from turns import usable_cores

STATE_BYTES = 84 * 84 * 4                 # one state of a rollout: four 84×84 uint8 frames (environment.STATE_SIZE)

# --fast: 4 actor-learners, all playing at once, each with 8 games in the emulator's C++ vector environment and
# one update per 5 steps × 8 games (lr 7e-4 and gradient norm 0.5 as in synchronous A2C); measured fastest to a
# good score on a 2-core CPU (BENCHMARKS.md).
FAST = dict(threads=4, envs_per_thread=8, active_threads=4, t_max=5, lr=7e-4, max_grad_norm=0.5, rms_epsilon=1e-10)
# The options whose default is the book's value, or --fast's: their type and help.
PRESET_OPTIONS = dict(
    threads=(positive_int, "actor-learner threads"),
    envs_per_thread=(positive_int, "games each thread plays at once; above 1 they run in ALE's vector environment "
                                   "with its preprocessing"),
    active_threads=(positive_int, "threads that play at the same time, the others wait their turn; None: one per "
                                  "CPU core, here {cores}"),
    t_max=(positive_int, "steps per rollout before an update"),
    lr=(positive_float, "RMSprop learning rate"),
    max_grad_norm=(positive_float, "clip the gradients to this global norm"),
    rms_epsilon=(positive_float, "RMSprop epsilon, inside the square root"))

# The A3C network is small: its updates cost little maths and much overhead, so bfloat16 makes them no faster
# even where the hardware has it (BENCHMARKS.md); --precision auto stays float32 everywhere.
AUTO_BFLOAT16 = False
RECORD_HELP = "save the games played as an animated GIF, in colour (no window needed; --episodes 1 keeps it short)"


def add_preset_options(parser, book):
    """--fast and the options of PRESET_OPTIONS; `book` holds the book's value of each."""
    fast = ", ".join(f"--{key.replace('_', '-')} {value}" for key, value in FAST.items())
    parser.add_argument("--fast", action="store_true",
                        help=f"the fast preset for a CPU: {fast} (options given explicitly win)")
    for key, (kind, text) in PRESET_OPTIONS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, default=argparse.SUPPRESS,
                            help=f"{text.format(cores=usable_cores())} (default: {book[key]}; "
                                 f"with --fast: {FAST[key]})")


def apply_preset(parser, args, book):
    """Each preset option not given on the command line takes --fast's value or the book's. Then the rollout
    memory of all threads (t_max × games per thread × one state × threads) must fit in this machine's memory:
    otherwise a command-line error (exit 2) names the largest of the three options, before anything is made."""
    for key, value in (FAST if args.fast else book).items():
        if not hasattr(args, key):
            setattr(args, key, value)
    sizes = {"--t-max": args.t_max, "--envs-per-thread": args.envs_per_thread, "--threads": args.threads}
    check_memory(parser, max(sizes, key=sizes.get), args.t_max * args.envs_per_thread * STATE_BYTES * args.threads,
                 "the threads' rollouts (t_max × games per thread × 84·84·4 bytes × threads)")
