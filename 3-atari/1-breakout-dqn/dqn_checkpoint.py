"""Saving, resuming and bookkeeping of the Breakout DQN: not the chapter's lesson, safe to skip while reading the book.

One Keras weights file holds the weights and what --load resumes from: the agent step count, epsilon, the last
finished game and the score curve (rows [episode, global step, score]), as HDF5 attributes and a dataset, written
atomically together. The shipped weights were saved before the facts went inside the file; theirs are in a JSON
file beside it (breakout_dqn_trained.json), which is still read.

    save_weights(model, path, global_step, epsilon, episode, curve)
    save_run(agent, curve, episode_before, weights_path, graph_path)   the weights file and the score graph
    weights_facts(path)        -> {global_step, epsilon, episode, curve}, or None for plain Keras weights
    resume(agent, path, how_to_make) -> (first episode, curve): --load, with the line that says where it resumes
    EpisodeStats               one game's average max Q and loss and its speed: its printed line and TensorBoard
"""
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from plumbing import atomic_write, load_weights, log_scalars, save_graph


def save_weights(model, path, global_step, epsilon, episode, curve):
    """The weights and what --load resumes from (agent steps, epsilon, last finished game, the score curve
    as rows [episode, global step, score]) in ONE Keras weights file, written atomically: after a kill
    the file on disk is the old one or the new one, never weights with another run's step count."""
    def write(tmp):
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as file:
            file.attrs.update(dqn_global_step=global_step, dqn_epsilon=epsilon, dqn_episode=episode)
            file.create_dataset("dqn_curve", data=np.asarray(curve, np.float64).reshape(-1, 3))
    atomic_write(path, write)


def save_run(agent, curve, episode_before, weights_path, graph_path):
    """The training run's checkpoint: the weights with their facts (the last finished game: the curve's, or
    `episode_before` when this run has finished none yet), and the graph of the scores against agent steps."""
    episode_done = curve[-1][0] if curve else episode_before
    save_weights(agent.model, weights_path, agent.global_step, agent.epsilon, episode_done, curve)
    save_graph(graph_path, [row[1] for row in curve], [row[2] for row in curve],
               "agent steps (4 frames each)", "DQN on Breakout")


def old_sidecar_of(weights_path):
    """Where weights saved before the facts went into the file kept them (the shipped _trained ones)."""
    return Path(str(weights_path).removesuffix(".weights.h5") + ".json")


def weights_facts(path):
    """{global_step, epsilon, episode, curve} saved with the weights, or None when there are none (plain
    Keras weights). Call it after load_weights, which reports a file that is not readable at all."""
    try:
        with h5py.File(path, "r") as file:
            if "dqn_global_step" in file.attrs:
                return {"global_step": int(file.attrs["dqn_global_step"]),
                        "epsilon": float(file.attrs["dqn_epsilon"]),
                        "episode": int(file.attrs["dqn_episode"]),
                        "curve": [[int(e), int(s), float(score)] for e, s, score in file["dqn_curve"][()]]}
    except (OSError, KeyError, ValueError, TypeError) as error:
        sys.exit(f"error: cannot read the step count and epsilon stored in {path} ({type(error).__name__}: "
                 f"{error}); train anew without --load")
    sidecar = old_sidecar_of(path)
    if not sidecar.exists():
        return None
    try:
        saved = json.loads(sidecar.read_text())
        facts = {"global_step": int(saved["global_step"]), "epsilon": float(saved["epsilon"]),
                 "episode": int(saved["episode"]),
                 "curve": [[int(e), int(s), float(score)] for e, s, score in saved["curve"]]}
        # The sidecar must describe one run: epsilon a probability, the curve ending at its last game.
        if not (0.0 <= facts["epsilon"] <= 1.0 and facts["global_step"] >= 0 and facts["episode"] >= 0):
            raise ValueError("step count, episode or epsilon out of range")
        if facts["curve"] and (facts["curve"][-1][0] != facts["episode"]
                               or facts["curve"][-1][1] > facts["global_step"]):
            raise ValueError("its score curve does not end at its last episode and step")
    except (OSError, ValueError, KeyError, TypeError) as error:
        sys.exit(f"error: cannot read {sidecar}, the step count and epsilon of {path.name} "
                 f"({type(error).__name__}: {error}); move it away to start from step 0")
    return facts


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

    def add_loss(self, loss):
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
