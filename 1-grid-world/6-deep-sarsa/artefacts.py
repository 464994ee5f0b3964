"""What a training run of the moving-obstacle grid world chapters leaves behind, and where. Not the chapter's
lesson: safe to skip while reading the book.

이 파일은 장의 내용이 아닙니다: 학습이 남기는 가중치, 점수 그래프, TensorBoard 기록을 어디에 어떻게 저장하는지를
모아 두었습니다. 책과 함께 읽을 때는 건너뛰어도 됩니다.

Under the run's save folder: save_model/<name>.weights.h5 (Keras 3 weights), save_graph/<name>.png (the score
of every episode and their running mean) and summary/<name>/ (TensorBoard, the hyperparameters as text first).
Every file is written atomically (plumbing.atomic_write). This file is the same in 6-deep-sarsa and 7-reinforce
(a test checks it).
"""
import sys

from plumbing import atomic_write, ensure_writable, save_graph


class TrainingArtefacts:
    """The folders are checked (and made) at once, so that a run that could not save fails before training."""

    def __init__(self, model, save_dir, name, title, hyperparameters):
        import tensorflow as tf
        self.model, self.title = model, title
        self.weights_path = save_dir / "save_model" / f"{name}.weights.h5"
        self.graph_path = save_dir / "save_graph" / f"{name}.png"
        self.summary_dir = save_dir / "summary"
        ensure_writable(self.weights_path.parent, self.graph_path.parent)
        self.writer = tf.summary.create_file_writer(str(self.summary_dir / name))
        with self.writer.as_default(step=0):
            tf.summary.text("hyperparameters",
                            "\n".join(f"    {key}: {value}" for key, value in sorted(hyperparameters.items())))

    # The weights and the graph of the scores so far (every SAVE_EVERY episodes, at the end, after a stop).
    def save(self, scores):
        atomic_write(self.weights_path, self.model.save_weights)
        save_graph(self.graph_path, range(1, len(scores) + 1), scores, "episode", self.title)
        self.writer.flush()

    # The run's last lines: where everything went; after a stop, one line and exit 130.
    def report(self, stopped):
        if stopped:
            print(f"interrupted: weights saved to {self.weights_path}, graph to {self.graph_path}")
            sys.exit(130)
        print(f"weights saved to {self.weights_path}")
        print(f"graph saved to {self.graph_path}")
        print(f"TensorBoard: tensorboard --logdir {self.summary_dir}")
