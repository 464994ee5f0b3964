"""What a CartPole training run writes, and when. Not the chapter's lesson: safe to skip while reading the book.

이 파일은 장의 내용이 아닙니다: 학습이 남기는 가중치, 점수 그래프, TensorBoard 기록을 언제 어디에 저장하는지,
--load로 이어서 학습할 때 무엇을 이어 가는지를 모아 두었습니다. 책과 함께 읽을 때는 건너뛰어도 됩니다.

Everything goes under the run's save folder (--save-dir, default the chapter's folder), checked before the
first episode:

    save_model/<name>.weights.h5    the Keras 3 weights and, inside the same file, what --load goes on from:
                                    the number of episodes trained, their scores and (DQN) epsilon
    save_graph/<name>.png           the score of every episode and their running mean
    summary/<name>/                 TensorBoard scalars of every episode (tensorboard --logdir <folder>/summary)

Every 10 episodes the weights are saved and then the graph redrawn (a redraw costs more than a short episode),
and once more at the end. The run ends solved, out of episodes, or stopped by Ctrl-C, `kill` or a closed
terminal (between two steps): one line says which, then it saves and prints the paths; after a stop signal
(also one during that last save) the script exits with 130.

Nothing trained is lost:
- a save that fails (a full disk, a folder in the way) says so in one line and training goes on; the files of
  the last save stay as they were. A final save that fails ends the run with one line, exit status 1;
- a fresh run first renames an earlier run's weights and graph to <name>.previous.* (and says so);
- --load of weights saved here resumes them: the episode numbers, the scores (stop rule and graph), the
  TensorBoard steps and the DQN's epsilon go on; --episodes counts the resumed episodes too. Weights without
  these facts (the shipped *_trained ones) start at episode 1;
- numbers that are not finite are never saved: a NaN or infinite loss or weights stop the run with one line,
  exit status 1, and the last finite checkpoint stays.

This file is the same in 1-dqn and 2-actor-critic (a test compares the bytes), so that each folder stays
standalone without the copies drifting apart.
"""
import math
import sys
import time

import tensorflow as tf

from plumbing import (ensure_writable, finish, finite, keep_previous, log_scalars, run_facts, save_folder, save_graph,
                      save_run_weights, try_save)

SAVE_EVERY = 10                # episodes between two saves of the weights and the graph
# What the weights file stores beside the weights, and the range each fact must lie in (checked at --load).
FACT_CHECKS = {"episode": lambda episode: isinstance(episode, int) and episode >= 0,
               "epsilon": lambda epsilon: 0.0 <= epsilon <= 1.0}


def add_save_dir_argument(parser, default):
    """--save-dir DIR: not an empty name, nor a symbolic-link loop (plumbing's save_folder)."""
    parser.add_argument("--save-dir", type=save_folder, default=default, metavar="DIR",
                        help="artefacts go to DIR/save_model, DIR/save_graph, DIR/summary")


def stored_facts(path):
    """What a weights file saved by TrainingRecord holds beside the weights: {"episode": episodes trained,
    "scores": their scores, "epsilon": the DQN's}, or {} for weights saved otherwise (the shipped *_trained ones).
    A fact of the wrong type or range: one line, exit status 1."""
    facts = run_facts(path, checks=FACT_CHECKS)
    if not facts:
        return {}
    curve = facts.pop("curve")
    if facts.get("episode") != len(curve) or any(len(row) != 1 for row in curve):
        sys.exit(f"error: cannot read what {path} stores beside its weights (a curve of {len(curve)} scores for "
                 f"episode = {facts.get('episode')!r}); train anew without --load")
    facts["scores"] = [row[0] for row in curve]
    return facts


class TrainingRecord:
    """The files of one training run in save_dir. `load`: the --load weights the run starts from (None: from
    scratch); where they hold a run's facts, the record goes on from them. `scores` is the list of every episode's
    score, the resumed ones first: the training loop appends to it."""

    def __init__(self, save_dir, name, title, load, episodes):
        self.scores = stored_facts(load).get("scores", []) if load else []
        if len(self.scores) >= episodes:
            sys.exit(f"error: {load} already holds {len(self.scores)} episodes of training; to go on, pass "
                     f"--episodes N with N above {len(self.scores)}")
        ensure_writable(save_dir / "save_model", save_dir / "save_graph", save_dir / "summary" / name)
        self.save_dir = save_dir
        self.title = title                        # of the graph
        self.weights_path = save_dir / "save_model" / f"{name}.weights.h5"
        self.graph_path = save_dir / "save_graph" / f"{name}.png"
        keep_previous([self.weights_path, self.graph_path], load, folders=[save_dir / "summary" / name])
        if self.scores:
            print(f"resuming {load} at episode {len(self.scores) + 1}: its scores, graph and TensorBoard steps go on")
        self.writer = tf.summary.create_file_writer(str(save_dir / "summary" / name))
        self.start = time.perf_counter()

    # After every episode (numbered from 1, resumed ones included): its TensorBoard scalars, and every
    # SAVE_EVERY episodes the weights and the graph.
    def episode_done(self, episode, agent, stop, **scalars):
        log_scalars(self.writer, episode, **scalars)
        if episode % SAVE_EVERY == 0:
            self.save(agent, stop, final=False)

    def draw_graph(self):
        save_graph(self.graph_path, range(1, len(self.scores) + 1), self.scores, "episode", self.title)

    # The weights with the facts a resumed run needs, then the graph (never ahead of the weights). Weights that
    # are not all finite numbers are not saved: the run stops as diverged. True when everything was saved.
    def save(self, agent, stop, final):
        if getattr(stop, "diverged", None) is not None or not finite(agent.model.get_weights()):
            stop.check_finite(math.nan, "the weights")
            return False
        facts = {"epsilon": float(agent.epsilon)} if hasattr(agent, "epsilon") else {}    # the DQN's
        weights = try_save("the weights", self.weights_path.parent, lambda: save_run_weights(
            agent.model, self.weights_path, curve=self.scores or None, episode=len(self.scores), **facts), final)
        return weights and try_save("the graph", self.graph_path.parent, self.draw_graph, final)

    # The end of the run: how it ended, in one line, then the weights, the graph and the log; exit status 130
    # after a stop signal (also one during this save), 1 after a divergence (nothing saved then).
    def finish(self, agent, episodes, total_steps, solved, stop):
        seconds = time.perf_counter() - self.start
        self.writer.flush()
        if getattr(stop, "diverged", None) is None:
            if stop.requested:
                print(f"\ninterrupted at episode {len(self.scores) + 1}: saving")
            elif solved:
                print(f"solved at episode {len(self.scores)} ({total_steps} env steps, {seconds:.1f} s of training)")
            else:
                print(f"not solved in {episodes} episodes ({total_steps} env steps, {seconds:.1f} s of training)")
            if self.save(agent, stop, final=True):
                print(f"weights: {self.weights_path}\ngraph: {self.graph_path}\n"
                      f"tensorboard: tensorboard --logdir {self.save_dir / 'summary'}")
        finish(stop, where=self.weights_path)     # plumbing's: the exit status, and the line of a divergence
