"""Does Breakout DQN learn the same in bfloat16 as in float32? Runs of both, side by side.

    # one run (resumable: run the same command again and it goes on from its last checkpoint)
    python benchmarks/precision_learning.py train --precision bfloat16 --seed 1 --out DIR/bfloat16-seed1
    # after the runs: greedy-play scores of every snapshot, curves side by side, a markdown table
    python benchmarks/precision_learning.py report DIR/float32-seed1 DIR/float32-seed2 DIR/bfloat16-seed1 ...

`train` runs the chapter's own training loop (breakout_dqn.train, not a copy) with a shortened exploration
schedule (--train-start 20000 --exploration-steps 250000, as the shipped agent's first leg), in legs of
--snapshot-every agent steps. After each leg it keeps a copy of the weights (snapshots/step_NNNNNNN.weights.h5) and a
checkpoint (the chapter's weights file with its step count, epsilon and curve, and Adam's state in adam.npz), so a
run stopped by the end of a session goes on with the same command (the replay memory starts empty again, and
Adam too where adam.npz is missing; both precisions are resumed alike). SIGTERM or Ctrl-C saves a checkpoint. Each finished game's line (score, average max Q, average loss) goes to
DIR/games.log. Each run uses one TensorFlow thread, so that several runs can share a machine.

`report` plays every snapshot greedily (epsilon 0.01 as the book's play_dqn_model.py, a fresh seed per game,
a cap of 10,000 agent steps a game) in the precision it was trained in, keeps the means in DIR/greedy.csv (so a
snapshot is scored once, and its file may go), and writes precision_learning.png (training score, average loss,
average max Q and greedy score against agent steps) and precision_learning.md.
"""
import argparse
import contextlib
import re
import sys
from pathlib import Path

import numpy as np

from common import load_module  # noqa: E402  (benchmarks/common.py)

GAME_LINE = re.compile(r"episode: (\d+) \| score: ([\d.]+) \| steps: \d+ \| epsilon: ([\d.]+) \| global step: (\d+)"
                       r" \| avg max Q: ([-\d.]+|-) \| avg loss: ([\d.e+-]+)")


def load_dqn():
    """The chapter's agent script, and beside it its plumbing.py (atomic_write, StopFlag, seed_everything,
    load_weights), dqn_checkpoint.py (the weights file with its facts) and environment.py (make_env)."""
    folder = "3-atari/1-breakout-dqn"
    return (load_module(f"{folder}/breakout_dqn.py"), load_module(f"{folder}/plumbing.py"),
            load_module(f"{folder}/dqn_checkpoint.py"), load_module(f"{folder}/environment.py"))


def one_thread():
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def save_checkpoint(plumbing, checkpoint, agent, out, curve):
    episode = curve[-1][0] if curve else 0
    checkpoint.save_weights(agent.model, out / "checkpoint.weights.h5", agent.global_step, agent.epsilon, episode,
                            curve)
    state = {f"v{i}": v.numpy() for i, v in enumerate(agent.optimizer.variables)}
    plumbing.atomic_write(out / "adam.npz", lambda tmp: np.savez(open(tmp, "wb"), **state))


def train(args):
    one_thread()
    dqn, plumbing, dqn_checkpoint, world = load_dqn()
    out = args.out
    (out / "snapshots").mkdir(parents=True, exist_ok=True)
    stop = plumbing.StopFlag()
    plumbing.seed_everything(args.seed)                  # a fresh run: the same first weights in both precisions
    agent = dqn.DQNAgent(memory_size=args.memory_size, train_start=args.train_start,
                         exploration_steps=args.exploration_steps, precision=args.precision)
    curve, first_episode = [], 1
    checkpoint = out / "checkpoint.weights.h5"
    if checkpoint.exists():
        plumbing.load_weights(agent.model, checkpoint, "delete the run's folder to start anew")
        agent.update_target_model()
        facts = dqn_checkpoint.weights_facts(checkpoint)
        agent.global_step, agent.epsilon, curve = facts["global_step"], facts["epsilon"], facts["curve"]
        first_episode = facts["episode"] + 1
        if (out / "adam.npz").exists():              # Adam's moments (kept beside, not in the repository)
            with np.load(out / "adam.npz") as state:
                for i, variable in enumerate(agent.optimizer.variables):
                    variable.assign(state[f"v{i}"])
        else:
            print("no adam.npz beside the checkpoint: Adam starts afresh")
        print(f"resuming at step {agent.global_step}, episode {first_episode}, epsilon {agent.epsilon:.3f}")
        plumbing.seed_everything(args.seed + agent.global_step)      # not the same random numbers as the first leg
    env = world.make_env()
    print(f"precision {args.precision}, seed {args.seed}, to {args.steps} steps", flush=True)
    with open(out / "games.log", "a", encoding="utf-8") as log:
        while agent.global_step < args.steps and not stop.requested:
            leg_end = min(args.steps, (agent.global_step // args.snapshot_every + 1) * args.snapshot_every)
            with contextlib.redirect_stdout(log):
                dqn.train(agent, env, max_steps=leg_end, train_freq=dqn.TRAIN_FREQ, first_episode=first_episode,
                          curve=curve, seed=None if curve else args.seed, stop=stop)
                log.flush()
            first_episode = curve[-1][0] + 1 if curve else 1
            if agent.global_step >= leg_end:
                agent.model.save_weights(out / "snapshots" / f"step_{leg_end:07d}.weights.h5")
            save_checkpoint(plumbing, dqn_checkpoint, agent, out, curve)
            print(f"step {agent.global_step}: checkpoint saved", flush=True)
    env.close()
    if stop.requested:
        sys.exit(130)


def read_games(out):
    rows = []
    for line in (out / "games.log").read_text(encoding="utf-8").splitlines():
        match = GAME_LINE.match(line)
        if match:
            episode, score, epsilon, step, max_q, loss = match.groups()
            rows.append((int(step), float(score), float(loss), np.nan if max_q == "-" else float(max_q)))
    return np.array(rows).reshape(-1, 4)


def read_greedy(out):
    """{agent steps: greedy mean} of the snapshots a report scored before (DIR/greedy.csv)."""
    path = out / "greedy.csv"
    if not path.exists():
        return {}
    rows = [line.split(",") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line]
    return {int(steps): float(mean) for steps, mean in rows}


def greedy_scores(dqn, plumbing, world, path, precision, games, seed):
    agent = dqn.DQNAgent(memory_size=1, precision=precision)
    agent.model.load_weights(path)
    agent.epsilon = dqn.PLAY_EPSILON
    env = world.make_env()
    plumbing.seed_everything(seed)
    with contextlib.redirect_stdout(None):
        scores = [dqn.play(agent, env, 1, max_episode_steps=10_000, seed=seed + game)[0] for game in range(games)]
    env.close()
    return scores


def running_mean(values, window):
    window = min(window, len(values))
    return np.convolve(values, np.ones(window) / window, mode="valid") if window else values


def report(args):
    dqn, plumbing, _, world = load_dqn()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))
    colours = {"float32": "tab:blue", "bfloat16": "tab:orange"}
    table = {}
    for out in args.runs:
        precision, seed = re.match(r"(float32|bfloat16)-seed(\d+)", out.name).groups()
        games = read_games(out)
        style = dict(color=colours[precision], linestyle="-" if int(seed) % 2 else "--", label=out.name)
        if len(games):
            step = games[:, 0]
            for axis, column, window in ((axes[0, 0], 1, 100), (axes[0, 1], 2, 100), (axes[1, 0], 3, 100)):
                values = games[:, column]
                keep = ~np.isnan(values)
                axis.plot(step[keep][min(window, keep.sum()) - 1:], running_mean(values[keep], window), **style)
        greedy = read_greedy(out)                # snapshots scored before (their files need not be here any more)
        for snapshot in sorted((out / "snapshots").glob("step_*.weights.h5")):
            steps = int(snapshot.name[5:12])
            if steps not in greedy:
                greedy[steps] = float(np.mean(greedy_scores(dqn, plumbing, world, snapshot, precision, args.games,
                                                         args.seed)))
                print(f"{out.name} step {steps}: greedy mean {greedy[steps]:.1f} over {args.games} games", flush=True)
        plumbing.atomic_write(out / "greedy.csv", lambda tmp: Path(tmp).write_text(
            "agent_steps,greedy_mean\n" + "".join(f"{k},{v:.2f}\n" for k, v in sorted(greedy.items()))))
        for steps, mean in greedy.items():
            table.setdefault(steps, {})[out.name] = mean
        if greedy:
            axes[1, 1].plot(*zip(*sorted(greedy.items())), marker="o", **style)
    titles = ("training score (mean of the last 100 games)", "average loss per game (mean of 100)",
              "average max Q per game (mean of 100)", f"greedy play, epsilon 0.01 (mean of {args.games} games)")
    for axis, title in zip(axes.flat, titles):
        axis.set_title(title)
        axis.set_xlabel("agent steps")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.to / "precision_learning.png", dpi=80)
    names = [out.name for out in args.runs]
    lines = ["| agent steps | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for steps in sorted(table):
        lines.append(f"| {steps:,} | " + " | ".join(f"{table[steps][n]:.1f}" if n in table[steps] else "–"
                                                  for n in names) + " |")
    (args.to / "precision_learning.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("train", help="one training run, resumable")
    run.add_argument("--precision", choices=("float32", "bfloat16"), required=True)
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--out", type=Path, required=True, help="the run's folder, named PRECISION-seedN")
    run.add_argument("--steps", type=int, default=400_000, help="agent steps in all")
    run.add_argument("--snapshot-every", type=int, default=50_000)
    run.add_argument("--memory-size", type=int, default=200_000, help="replay memory in frames")
    run.add_argument("--train-start", type=int, default=20_000)
    run.add_argument("--exploration-steps", type=int, default=250_000)
    show = commands.add_parser("report", help="greedy scores of the snapshots, curves, table")
    show.add_argument("runs", type=Path, nargs="+")
    show.add_argument("--games", type=int, default=10, help="greedy games per snapshot")
    show.add_argument("--seed", type=int, default=100)
    show.add_argument("--to", type=Path, default=Path("."), help="folder for the PNG and the table")
    args = parser.parse_args()
    train(args) if args.command == "train" else report(args)


if __name__ == "__main__":
    main()
