"""What a CartPole training run writes, and when. Not the chapter's lesson: safe to skip while reading the book.

이 파일은 장의 내용이 아닙니다: 학습이 남기는 가중치, 점수 그래프, TensorBoard 기록을 언제 어디에 저장하는지를
모아 두었습니다. 책과 함께 읽을 때는 건너뛰어도 됩니다.

Everything goes under the run's save folder (--save-dir, default the chapter's folder), checked before the
first episode:

    save_model/<name>.weights.h5    the Keras 3 weights, written once, at the end of the run
    save_graph/<name>.png           the score of every episode and their running mean, redrawn every 10
                                    episodes (a redraw costs more than a short episode) and at the end
    summary/<name>/                 TensorBoard scalars of every episode (tensorboard --logdir <folder>/summary)

The run ends solved, out of episodes, or stopped by Ctrl-C or `kill` (between two steps): one line says
which, then everything is saved once and the paths are printed; after a stop the script exits with 130.

This file is the same in 1-dqn and 2-actor-critic (a test compares the bytes), so that each folder stays
standalone without the copies drifting apart.
"""
import sys
import time

import tensorflow as tf

from plumbing import atomic_write, ensure_writable, log_scalars, save_graph


class TrainingRecord:
    def __init__(self, save_dir, name, title):
        ensure_writable(save_dir / "save_model", save_dir / "save_graph", save_dir / "summary")
        self.save_dir = save_dir
        self.title = title                        # of the graph
        self.weights_path = save_dir / "save_model" / f"{name}.weights.h5"
        self.graph_path = save_dir / "save_graph" / f"{name}.png"
        self.writer = tf.summary.create_file_writer(str(save_dir / "summary" / name))
        self.start = time.perf_counter()

    # After every episode (numbered from 1): its TensorBoard scalars, and every 10 episodes the graph.
    def episode_done(self, episode, scores, **scalars):
        log_scalars(self.writer, episode, **scalars)
        if episode % 10 == 0:
            self.draw_graph(scores)

    def draw_graph(self, scores):
        save_graph(self.graph_path, range(1, len(scores) + 1), scores, "episode", self.title)

    # The end of the run: how it ended, in one line, then the weights, the graph and the log, once; after a
    # stop signal, exit status 130.
    def finish(self, model, scores, episodes, total_steps, solved, stopped):
        seconds = time.perf_counter() - self.start
        if stopped:
            print(f"\ninterrupted at episode {len(scores) + 1}: saving")
        elif solved:
            print(f"solved at episode {len(scores)} ({total_steps} env steps, {seconds:.1f} s of training)")
        else:
            print(f"not solved in {episodes} episodes ({total_steps} env steps, {seconds:.1f} s of training)")
        atomic_write(self.weights_path, model.save_weights)
        self.draw_graph(scores)
        self.writer.flush()
        print(f"weights: {self.weights_path}\ngraph: {self.graph_path}\n"
              f"tensorboard: tensorboard --logdir {self.save_dir / 'summary'}")
        if stopped:
            sys.exit(130)
