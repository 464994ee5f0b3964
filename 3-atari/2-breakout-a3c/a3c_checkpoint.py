"""Checkpoints and the run's record for breakout_a3c.py: not the chapter's lesson, safe to skip while reading the book.

- The weights file (save_model/breakout_a3c.weights.h5) is a plain Keras weights file that also holds the facts
  about the weights (HDF5 attributes a3c_preprocessing, a3c_total_steps, a3c_episodes, a3c_seconds, a3c_threads,
  a3c_envs_per_thread) and RMSprop's state (group a3c_optimizer): ONE file, written atomically, so that after a
  kill the weights and their facts never disagree, and --load goes on where training stopped (in the same
  --save-dir or another). The facts are checked when read: a wrong type or range is one line, exit 1.
- The curve (save_graph/breakout_a3c.csv, one row a game: CURVE_COLUMNS) and its graph (.png), saved AFTER the
  weights: the curve may lag the weights (a save that failed half-way), never lead them.
- Nothing is lost: a save that fails is one line (training goes on; the last checkpoint stays), weights that
  stopped being finite numbers are never saved (the run stops as diverged), and a fresh run first renames an
  earlier run's files to <name>.previous.<endings> (plumbing.keep_previous).

    save_weights(model, path, optimizer, **facts), weights_facts(path), load_optimizer(optimizer, path)
    save_checkpoint(agent, path, final)      A3CAgent.save_model: the weights with their facts, then the curve
    stop_diverged(agent, what)               a number stopped being finite: stop the threads, save nothing more
    resume(agent, path, how_to_make)         --load: weights, RMSprop's state, step and game counts go on
    load_to_play(model, path, how_to_make)   -> the preprocessing the weights were trained with
    RunLog(save_dir, name)                   the folders, the games' count, line and TensorBoard scalars, the
                                             curve, the clock
    hyperparameter_table(agent)              the run's settings, for TensorBoard

A3CAgent.save_model, load_model and train (breakout_a3c.py) call these; this module imports no agent code.
"""
import csv
import math
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np

from environment import PREPROCESSINGS
from plumbing import (atomic_write, check_weights_file, ensure_writable, finite, keep_previous, load_weights,
                      log_scalars, save_graph, save_weights_file, try_save)

CURVE_COLUMNS = ["episode", "total_steps", "score", "duration", "thread", "seconds"]


def count_from(least):
    """A test of a stored count: a whole number (not a bool, not text), at least `least`."""
    return lambda value: type(value) is int and value >= least


# What each stored fact must be (a file edited by hand, or damaged, must not start a run on nonsense).
FACT_CHECKS = {"total_steps": (count_from(0), "a whole number >= 0"),
               "episodes": (count_from(0), "a whole number >= 0"),
               "threads": (count_from(1), "a whole number >= 1"),
               "envs_per_thread": (count_from(1), "a whole number >= 1"),
               "seconds": (lambda value: type(value) in (int, float) and math.isfinite(value) and value >= 0,
                           "a finite number >= 0")}


# ---- the weights file also holds the facts about them ----
def save_weights(model, path, optimizer=None, **facts):
    """The weights, the facts about them (preprocessing, steps, games, seconds) and the optimiser's state (so
    that --load goes on where training stopped) in ONE Keras weights file, written atomically: after a kill
    the file on disk is the old one or the new one, never a mismatched pair."""
    def add(file):
        file.attrs.update({f"a3c_{key}": value for key, value in facts.items()})
        if optimizer is not None:
            group = file.create_group("a3c_optimizer")
            for index, variable in enumerate(optimizer.variables):
                group.create_dataset(str(index), data=np.asarray(variable))
    save_weights_file(model, path, add)     # built in memory: a full disk is an error, never a crash


def save_checkpoint(agent, path, final=False):
    """A3CAgent.save_model: the global weights with their facts and RMSprop's state, under the update lock (no
    update half-applied), THEN the curve (CSV, graph) of the same games: the curve never holds games the weights
    have not seen. Weights that stopped being finite numbers are not saved: the run stops as diverged and the last
    finite checkpoint stays. A save that fails is one line (plumbing.try_save): after a periodic one training goes
    on, the final one exits 1; the curve is not written after weights that were not. Returns whether the weights
    were saved."""
    rows, episodes = agent.log.snapshot()
    with agent.lock:
        if agent.log.diverged is None and not finite(agent.model.get_weights()):
            stop_diverged(agent, "a weight")
        if agent.log.diverged is not None:
            return False
        saved = try_save("the weights", path.parent, final=final, write=lambda: save_weights(
            agent.model, path, agent.optimizer, preprocessing=agent.preprocessing, total_steps=agent.total_steps,
            episodes=episodes, seconds=round(agent.log.seconds(), 1), threads=agent.threads,
            envs_per_thread=agent.envs_per_thread))
    if saved:
        try_save("the curve", agent.log.log_path.parent, lambda: agent.log.save_curve(rows), final)
    return saved


def stop_diverged(agent, what):
    """Training diverged: `what` (a weight, the gradients' global norm) is no longer a finite number, as after a far
    too large learning rate. Stop every thread and save nothing more, so that the last finite checkpoint stays;
    main() then ends in one line, exit 1 (plumbing.finish reads the stop flag's `diverged`)."""
    if agent.log.diverged is None:
        agent.log.diverged = what
        if hasattr(agent.stop, "check_finite"):     # a StopFlag (tests and benchmarks may pass a plain one)
            agent.stop.check_finite(float("nan"), what)
    agent.stop_event.set()


def load_optimizer(optimizer, path):
    """Restore the optimiser's state saved with the weights (RMSprop's running averages). Returns None when done,
    else why RMSprop starts afresh: no state in the file, or one that does not fit (a slot missing, another shape,
    numbers that are not finite); then nothing is changed."""
    try:
        with h5py.File(path, "r") as file:
            if "a3c_optimizer" not in file:
                return "no optimiser state in this file"
            group = file["a3c_optimizer"]
            values = [np.asarray(group[str(index)][()]) for index in range(len(group))]
    except (OSError, KeyError, ValueError, TypeError):
        values = []
    fits = len(values) == len(optimizer.variables) and all(
        value.shape == tuple(variable.shape) and value.dtype.kind in "fiu" and np.isfinite(value).all()
        for value, variable in zip(values, optimizer.variables))
    if not fits:
        return "the optimiser state in this file is incomplete or damaged"
    for variable, value in zip(optimizer.variables, values):
        variable.assign(value)
    return None


def weights_facts(path, how_to_make="save them with breakout_a3c.py"):
    """The facts save_weights stored, checked (a wrong type or range: one line, exit 1); weights from before they
    were stored have none but the book's preprocessing. A path that is not a regular file is refused first, in one
    line (reading a FIFO would wait for ever)."""
    check_weights_file(path, how_to_make)
    try:
        with h5py.File(path, "r") as file:
            facts = {key[4:]: file.attrs[key] for key in file.attrs if key.startswith("a3c_")}
    except (OSError, KeyError, ValueError, TypeError):
        facts = {}                        # load_weights reports the unreadable file
    facts = {key: value.item() if isinstance(value, np.generic) else value for key, value in facts.items()}
    facts["preprocessing"] = str(facts.get("preprocessing", "book"))
    if facts["preprocessing"] not in PREPROCESSINGS:
        sys.exit(f"error: {path} names an unknown preprocessing {facts['preprocessing']!r}")
    for key, (check, expected) in FACT_CHECKS.items():
        if key in facts and not check(facts[key]):
            sys.exit(f"error: cannot load {path}: its stored {key} is {facts[key]!r}, not {expected}; {how_to_make}")
    return facts


# ---- loading: --load to go on training, or weights to play ----
def resume(agent, path, how_to_make):
    """--load: the weights, RMSprop's state and the step and game counts into `agent` (an A3CAgent); the run's
    record goes on from them (RunLog.continue_curve). Weights trained with the other preprocessing, or not finite,
    or with facts of a wrong type are refused in one line. The learning rate is the command line's (--lr)."""
    facts = weights_facts(path, how_to_make)
    load_weights(agent.model, path, how_to_make)
    if facts["preprocessing"] != agent.preprocessing:
        sys.exit(f"error: {path} was trained with the {facts['preprocessing']} preprocessing; continue it "
                 f"with --envs-per-thread {'1' if facts['preprocessing'] == 'book' else '2 or more'}")
    note = load_optimizer(agent.optimizer, path)
    agent.optimizer.learning_rate = agent.learning_rate     # the saved state holds the earlier run's rate
    if note and agent.verbose:
        print(f"note: {note}: RMSprop starts its running averages afresh")
    agent.total_steps = agent.log.continue_curve(facts, path)


def load_to_play(model, path, how_to_make):
    """Weights to play, and the preprocessing they were trained with (said in one line): they are played with it."""
    facts = weights_facts(path, how_to_make)
    load_weights(model, path, how_to_make)
    print(f"playing {path} with the {facts['preprocessing']} preprocessing it was trained with")
    return facts["preprocessing"]


# ---- the curve: one row a game ----
def write_curve(path, rows):
    with open(path, "w", newline="") as file:
        out = csv.writer(file)
        out.writerow(CURVE_COLUMNS)
        out.writerows(rows)


def read_curve(path, up_to_episode):
    """The rows of a saved curve up to the given game (a curve from before `seconds` was kept gets blanks)."""
    try:
        with open(path, newline="") as file:
            rows = []
            for r in csv.DictReader(file):
                seconds = r.get("seconds") or "nan"
                rows.append((int(r["episode"]), int(r["total_steps"]), float(r["score"]), int(r["duration"]),
                             int(r["thread"]), float(seconds)))
    except (OSError, KeyError, ValueError, TypeError) as error:
        sys.exit(f"error: cannot read the training curve {path} ({type(error).__name__}: {error}); "
                 "move it away to start a new curve")
    return [row for row in rows if row[0] <= up_to_episode]


# ---- the record of a training run ----
class RunLog:
    """The record of one training run, kept for all the actor-learner threads: the games' count and curve (one
    row a game: CURVE_COLUMNS), one printed line and TensorBoard scalars a game, the training clock (which goes
    on over runs resumed with --load), where the run's files go under `save_dir`, and what diverged, if anything
    did (stop_diverged)."""

    def __init__(self, save_dir, name, verbose=True):
        self.save_dir, self.verbose = Path(save_dir), verbose
        self.model_path = self.save_dir / "save_model" / f"{name}.weights.h5"
        self.best_path = self.save_dir / "save_model" / f"{name}_best.weights.h5"
        self.graph_path = self.save_dir / "save_graph" / f"{name}.png"
        self.log_path = self.save_dir / "save_graph" / f"{name}.csv"
        self.summary_path = self.save_dir / "summary" / name
        self.lock = threading.Lock()      # one thread at a time in the counter, the printout and the writer
        self.episode = 0
        self.scores = []                  # (episode, total steps, score, duration, thread, seconds)
        self.seconds_before = 0.0         # training seconds of the run(s) this one continues
        self.writer = None
        self.resumed_from = None          # the weights file of --load
        self.diverged = None              # what stopped being a finite number (stop_diverged), once something did
        self.start_time, self.start_steps, self.best_mean = time.perf_counter(), 0, float("-inf")

    def start(self, total_steps):
        """When the threads start playing: an earlier run's files in save_dir are kept under another name (not
        when this run goes on from them), and the clock (and the steps/s count) starts; the best mean so far is the
        curve's (that of a resumed run)."""
        keep_previous([self.model_path, self.best_path, self.log_path, self.graph_path], self.resumed_from)
        self.start_time, self.start_steps = time.perf_counter(), total_steps
        self.best_mean = self.recent_mean()[0]

    def seconds(self):
        return self.seconds_before + time.perf_counter() - self.start_time

    def open(self, hyperparameters=None):
        """Before training: the folders, checked (one line and exit 1 where they cannot be written, e.g. a file
        named `summary`; that one first, so that nothing is made then); given the table of the run's
        hyperparameters, TensorBoard: a writer for the games' scalars, and that table."""
        ensure_writable(self.summary_path, self.model_path.parent, self.graph_path.parent)
        if hyperparameters is None:
            return
        import tensorflow as tf
        self.writer = tf.summary.create_file_writer(str(self.summary_path))
        with self.writer.as_default(step=0):
            tf.summary.text("hyperparameters", hyperparameters)

    # Called by a worker at the end of a game: count it (thread-safely), print one line, write summaries.
    def end_episode(self, thread, score, duration, avg_max_prob, total_steps):
        with self.lock:
            self.episode += 1
            episode, seconds = self.episode, self.seconds()
            self.scores.append((episode, total_steps, score, duration, thread, round(seconds, 1)))
            steps_per_s = (total_steps - self.start_steps) / max(time.perf_counter() - self.start_time, 1e-9)
            if self.verbose:
                print(f"episode: {episode} | score: {score:.1f} | avg max prob: {avg_max_prob:.3f} | "
                      f"duration: {duration} | thread: {thread} | total steps: {total_steps} | "
                      f"steps/s: {steps_per_s:.0f}", flush=True)
            if self.writer is not None:
                log_scalars(self.writer, episode, **{"Total Reward/Episode": score,
                                                     "Average Max Prob/Episode": avg_max_prob,
                                                     "Duration/Episode": duration, "Steps per Second": steps_per_s})

    def recent_mean(self, n=100):
        """(mean score of the last n games, how many there were); -inf before the first game."""
        with self.lock:
            scores = [row[2] for row in self.scores[-n:]]
        return (float(np.mean(scores)) if scores else float("-inf")), len(scores)

    def new_best(self):
        """At each save: one line with the mean of the last 100 games, and True when that mean (over 20 games at
        least) is the best since the run started: the weights are then also kept as the best."""
        mean, count = self.recent_mean()
        best = count >= 20 and mean > self.best_mean
        if best:
            self.best_mean = mean
        if self.verbose:
            print(f"saved {self.model_path} (mean of last {count} scores: {mean:.1f})", flush=True)
        return best

    def snapshot(self):
        """(the curve's rows, the games counted) at this moment, taken together."""
        with self.lock:
            return list(self.scores), self.episode

    def save_curve(self, rows):
        """The curve's `rows` as CSV and, once a game was played, as a graph of the scores over the agent steps."""
        atomic_write(self.log_path, lambda tmp: write_curve(tmp, rows))
        if rows:
            save_graph(self.graph_path, [row[1] for row in rows], [row[2] for row in rows],
                       "agent steps (all threads; 1 step = 4 frames)", "Breakout A3C")

    def continue_curve(self, facts, path=None):
        """--load `path` (None: this save_dir's weights): the games' count, the agent steps and the training clock
        go on from the loaded weights' facts (weights_facts), in this save_dir or another; returns the agent steps
        done so far. Resumed in place (from this save_dir's own weights), the curve goes on too, without the games
        the weights have not seen (a kill between the two saves); it may stop short of them (a curve whose save
        failed). A file from before the facts were stored falls back on the curve."""
        self.resumed_from = path
        own = {self.model_path.resolve(), self.best_path.resolve()}
        if (path is None or Path(path).resolve() in own) and self.log_path.exists():
            self.scores = read_curve(self.log_path, int(facts.get("episodes", 1 << 62)))
        episode, total_steps, _, _, _, seconds = self.scores[-1] if self.scores else (0, 0, 0, 0, 0, 0.0)
        self.episode = int(facts.get("episodes", episode))
        self.seconds_before = float(facts.get("seconds", seconds))
        return int(facts.get("total_steps", total_steps))

    def report(self, total_steps, elapsed, shape, saved=True):
        """The end of training: steps, seconds and steps/s over `shape` (threads × games), and where it all went
        (no weights were `saved` after a divergence)."""
        if self.writer is not None:
            self.writer.flush()
        if not self.verbose:
            return
        steps = total_steps - self.start_steps
        print(f"{steps} steps in {elapsed:.0f} s ({steps / max(elapsed, 1e-9):.0f} steps/s over {shape})")
        if saved:
            print(f"weights saved to {self.model_path}")
        if saved and self.scores:
            print(f"graph saved to {self.graph_path}")
        if self.writer is not None:
            print(f"summaries in {self.summary_path} (tensorboard --logdir {self.save_dir / 'summary'})")


# ---- TensorBoard: the run's settings beside its curves ----
def hyperparameter_table(agent):
    rows = [("threads", agent.threads), ("games per thread", agent.envs_per_thread),
            ("active threads", agent.active_threads), ("preprocessing", agent.preprocessing),
            ("t_max", agent.t_max), ("gamma", agent.gamma), ("learning rate", agent.learning_rate),
            ("RMSprop rho", agent.optimizer.rho), ("RMSprop epsilon", agent.rms_epsilon),
            ("entropy beta", agent.entropy_beta), ("value weight", agent.value_weight),
            ("max grad norm", agent.max_grad_norm), ("seed", agent.seed)]
    return "| hyperparameter | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
