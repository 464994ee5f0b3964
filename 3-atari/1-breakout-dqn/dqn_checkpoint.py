"""Saving, resuming and bookkeeping of the Breakout DQN: not the chapter's lesson, safe to skip while reading the book.

One Keras weights file holds the weights and what --load resumes from: the agent step count, epsilon, the last
finished game and the score curve (rows [episode, global step, score]), as HDF5 attributes and a dataset, written
atomically together. The shipped weights were saved before the facts went inside the file; theirs are in a JSON
file beside it (breakout_dqn_trained.json), which is still read. Both are checked (types, ranges, one run's curve)
before a run resumes from them.

    save_weights(model, path, global_step, epsilon, episode, curve)
    RunFiles(save_dir, name, resumed_from)   a training run's folders (checked, an earlier run's files kept aside);
        .save(agent, curve, episode_before, stop, final)   weights first, then the graph; never a crash, never NaN
        .last_line(stop, stopped, global_step)              where things are, and the exit status (0, 1 or 130)
    weights_facts(path)        -> {global_step, epsilon, episode, curve}, or None for plain Keras weights
    resume(agent, path, how_to_make) -> (first episode, curve): --load, with the line that says where it resumes
    EpisodeStats               one game's average max Q and loss and its speed: its printed line and TensorBoard
"""
import json
import math
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from plumbing import (NEVER, ensure_writable, finish, finite, keep_previous, load_weights, log_scalars, save_graph,
                      save_weights_file, try_save)


def save_weights(model, path, global_step, epsilon, episode, curve):
    """The weights and what --load resumes from (agent steps, epsilon, last finished game, the score curve
    as rows [episode, global step, score]) in ONE Keras weights file, written atomically: after a kill
    the file on disk is the old one or the new one, never weights with another run's step count. The file is
    built in memory and written by Python (plumbing.save_weights_file): a full disk is an error like any other."""
    def add_facts(weights):
        weights.attrs.update(dqn_global_step=global_step, dqn_epsilon=epsilon, dqn_episode=episode)
        weights.create_dataset("dqn_curve", data=np.asarray(curve, np.float64).reshape(-1, 3))
    save_weights_file(model, path, add_facts)


class RunFiles:
    """A training run's artefacts under --save-dir: save_model/<name>.weights.h5 (the weights with what --load
    resumes from), save_graph/<name>.png (the scores) and summary/<name> (TensorBoard). The folders are made and
    checked first (one line, exit 1, where they cannot be written); an earlier run's weights and graph are kept as
    <name>.previous.* (said in one line), unless this run resumes from those very weights."""

    def __init__(self, save_dir, name, resumed_from=None):
        self.weights = save_dir / "save_model" / f"{name}.weights.h5"
        self.graph = save_dir / "save_graph" / f"{name}.png"
        self.summary = save_dir / "summary" / name
        ensure_writable(self.weights.parent, self.graph.parent, self.summary)
        keep_previous([self.weights, self.graph], resumed_from, folders=[self.summary])

    def save(self, agent, curve, episode_before, stop, final=False):
        """The checkpoint: the weights with their facts (the last finished game: the curve's, or `episode_before`
        when this run has finished none yet) FIRST, then the graph of the scores against agent steps, so that the
        graph never shows games the weights do not hold. Weights that are not all finite numbers are never saved:
        they stop the run as diverged (stop.check_finite) and the last finite checkpoint stays. A save that fails
        is one line (try_save): training goes on after a periodic one, a final one exits 1. True when saved."""
        if getattr(stop, "diverged", None) is not None:
            return False                                        # nothing finite to save; last_line says so
        if not finite(agent.model.get_weights()):
            stop.check_finite(math.nan, "a weight of the network")
            return False
        episode_done = curve[-1][0] if curve else episode_before

        def write_weights():
            save_weights(agent.model, self.weights, agent.global_step, agent.epsilon, episode_done, curve)

        def write_graph():
            save_graph(self.graph, [row[1] for row in curve], [row[2] for row in curve],
                       "agent steps (4 frames each)", "DQN on Breakout")
        return (try_save("the weights", self.weights.parent, write_weights, final)
                and try_save("the graph", self.graph.parent, write_graph, final))

    def last_line(self, stop, stopped, global_step):
        """After the final save: where things are, then the exit (plumbing's finish): 1 with one line after a
        divergence, 130 after a stop signal (also one that came during the final save), else return (0)."""
        if getattr(stop, "diverged", None) is None:
            if stopped:
                print(f"\ninterrupted at step {global_step}: weights saved to {self.weights}, graph to {self.graph}")
            else:
                print(f"weights saved to {self.weights} (step count, epsilon and score curve inside it),"
                      f" graph to {self.graph}, TensorBoard logs in {self.summary}")
        finish(stop)


def old_sidecar_of(weights_path):
    """Where weights saved before the facts went into the file kept them (the shipped _trained ones)."""
    return Path(str(weights_path).removesuffix(".weights.h5") + ".json")


def checked_facts(step, epsilon, episode, curve):
    """The facts of one run, checked: whole numbers >= 0 (not text) for the step count and the episode, epsilon a
    number between 0 and 1 (not NaN), the curve rows [episode, step, score] of finite numbers that end at that
    episode and no later than that step. Raises ValueError naming what is wrong."""
    def whole(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 0
    if not (whole(step) and whole(episode)):
        raise ValueError(f"step count {step!r} and episode {episode!r} must be whole numbers >= 0")
    number = isinstance(epsilon, (int, float, np.integer, np.floating)) and not isinstance(epsilon, (bool, np.bool_))
    if not (number and 0.0 <= epsilon <= 1.0):
        raise ValueError(f"epsilon {epsilon!r} is not a number between 0 and 1")
    rows = np.asarray(curve, dtype=np.float64)
    rows = rows.reshape(0, 3) if rows.size == 0 else rows
    if rows.ndim != 2 or rows.shape[1] != 3:
        raise ValueError(f"the score curve has the shape {rows.shape}, not rows of [episode, step, score]")
    if not (np.isfinite(rows).all() and (rows[:, :2] == np.round(rows[:, :2])).all()):
        raise ValueError("the score curve holds numbers that are not finite, or episodes and steps that are not whole")
    if len(rows) and (rows[-1, 0] != episode or rows[-1, 1] > step):
        raise ValueError("its score curve does not end at its last episode and step")
    return {"global_step": int(step), "epsilon": float(epsilon), "episode": int(episode),
            "curve": [[int(e), int(s), float(score)] for e, s, score in rows]}


def weights_facts(path):
    """{global_step, epsilon, episode, curve} saved with the weights, or None when there are none (plain
    Keras weights). Call it after load_weights, which reports a file that is not readable at all. Facts of the
    wrong type or range (a NaN epsilon, a step count stored as text) end the run in one line."""
    try:
        with h5py.File(path, "r") as file:
            if "dqn_global_step" in file.attrs:
                return checked_facts(file.attrs["dqn_global_step"], file.attrs["dqn_epsilon"],
                                     file.attrs["dqn_episode"], file["dqn_curve"][()])
    except (OSError, KeyError, ValueError, TypeError) as error:
        sys.exit(f"error: cannot read the step count and epsilon stored in {path} ({type(error).__name__}: "
                 f"{error}); train anew without --load")
    sidecar = old_sidecar_of(path)
    if not sidecar.exists():
        return None
    try:
        if not sidecar.is_file():             # a folder, or a FIFO whose reading would wait for ever
            raise OSError("not a regular file")
        saved = json.loads(sidecar.read_text())
        return checked_facts(saved["global_step"], saved["epsilon"], saved["episode"], saved["curve"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        sys.exit(f"error: cannot read {sidecar}, the step count and epsilon of {path.name} "
                 f"({type(error).__name__}: {error}); move it away to start from step 0")


def resume(agent, path, how_to_make):
    """--load: the weights into both networks, then the step count and epsilon saved with them (none saved:
    step 0, epsilon as it is). Returns (the first episode to play, the score curve so far)."""
    load_weights(agent.model, path, how_to_make)
    agent.update_target_model()
    facts = weights_facts(path)
    if facts is None:
        print(f"no step count in {path.name} (nor {old_sidecar_of(path).name} beside it): "
              "starting at step 0, epsilon 1.0")
        return 1, []
    agent.global_step, agent.epsilon = facts["global_step"], facts["epsilon"]
    print(f"resuming at step {agent.global_step}, episode {facts['episode'] + 1}, epsilon {agent.epsilon:.3f}")
    return facts["episode"] + 1, facts["curve"]


class EpisodeStats:
    """One game's numbers beside its score (the book's avg_q_max and avg_loss): the average max Q over the steps
    that ran the network (a random action runs none), the average loss over the steps that trained, the speed."""

    def __init__(self):
        self.started = time.perf_counter()
        self.sum_max_q, self.greedy_steps, self.sum_loss, self.train_steps = 0.0, 0, 0.0, 0

    def add_max_q(self, max_q):
        if max_q is not None:                                         # None: a random action
            self.sum_max_q, self.greedy_steps = self.sum_max_q + max_q, self.greedy_steps + 1

    def add_loss(self, loss, stop=NEVER):
        """Count a training step's loss; one that is NaN or infinite stops the run as diverged (stop.check_finite):
        nothing is saved after it, and the last finite checkpoint stays."""
        stop.check_finite(loss)
        self.sum_loss, self.train_steps = self.sum_loss + loss, self.train_steps + 1

    def report(self, writer, episode, score, step, epsilon, global_step):
        """The game's line, and its scalars in TensorBoard when there is a `writer`."""
        steps_per_second = step / (time.perf_counter() - self.started)
        avg_max_q = self.sum_max_q / self.greedy_steps if self.greedy_steps else None   # None: no greedy step yet
        q_text = "-" if avg_max_q is None else f"{avg_max_q:.4f}"
        avg_loss = self.sum_loss / self.train_steps if self.train_steps else 0.0
        print(f"episode: {episode} | score: {score:.1f} | steps: {step} | epsilon: {epsilon:.3f}"
              f" | global step: {global_step} | avg max Q: {q_text}"
              f" | avg loss: {avg_loss:.5f}"
              f" | steps/s: {steps_per_second:.0f}", flush=True)
        if writer is not None:
            scalars = {"Total Reward/Episode": score, "Duration/Episode": step,
                       "Average Loss/Episode": avg_loss, "Steps per Second": steps_per_second}
            if avg_max_q is not None:
                scalars["Average Max Q/Episode"] = avg_max_q
            log_scalars(writer, episode, **scalars)
