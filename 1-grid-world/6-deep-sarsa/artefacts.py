"""What a training run of the moving-obstacle grid world chapters leaves behind, and where. Not the chapter's
lesson: safe to skip while reading the book.

이 파일은 장의 내용이 아닙니다: 학습이 남기는 가중치, 점수 그래프, TensorBoard 기록을 어디에 어떻게 저장하는지,
그리고 `--load`로 이어서 학습할 때 어디서부터 이어 가는지를 모아 두었습니다. 책과 함께 읽을 때는 건너뛰어도 됩니다.

Under the run's save folder: save_model/<name>.weights.h5 (Keras 3 weights and, in the same file, what a resumed
run goes on from: the number of episodes, every episode's score and, for Deep SARSA, epsilon), save_graph/<name>.png
(the score of every episode and their running mean) and summary/<name>/ (TensorBoard, the hyperparameters as text
first). Every file is written atomically (plumbing.atomic_write), the weights first, then the graph: a graph never
shows episodes that the weights next to it have not learned from.

Nothing a reader trained is lost: a fresh run first renames an earlier run's weights and graph to
<name>.previous.weights.h5 / <name>.previous.png (and says so); a save that fails (a full disk) says so in one line
and training goes on (the final one exits 1); weights that are not finite numbers are never saved (the run stops as
diverged, exit 1, keeping its last finite checkpoint); a run resumed with --load goes on with the episode numbers,
the curve and the TensorBoard steps where the loaded run stopped. The shipped *_trained weights store no run: a run
started from them begins at episode 1. This file is the same in 6-deep-sarsa and 7-reinforce (a test checks it).
"""
import sys

from plumbing import ensure_writable, finish, finite, keep_previous, run_facts, save_graph, save_run_weights, try_save

# What a run stores beside its weights, and the test each must pass when --load reads it back.
CHECKS = {"episodes": lambda episodes: type(episodes) is int and episodes >= 0,
          "epsilon": lambda epsilon: type(epsilon) is float and 0.0 <= epsilon <= 1.0}


def stored_facts(args):
    """Where the run that saved --load stopped: {"episodes": N, "curve": [score of episode 1, ..., N], and
    "epsilon" for Deep SARSA}; {} when training afresh, for --play, and for weights saved without them (the shipped
    ones). Called after load_weights accepted the file. A fact of the wrong type or range, or a curve that is not
    one score per episode, ends the run in one line (exit 1) before anything is made."""
    if args.play or args.load is None:
        return {}
    facts = run_facts(args.load, CHECKS)
    if not facts:
        return {}
    curve = facts["curve"]
    if "episodes" not in facts or len(curve) != facts["episodes"] or any(len(row) != 1 for row in curve):
        sys.exit(f"error: cannot read what {args.load} stores beside its weights (its curve is not one score per "
                 "episode); train anew without --load")
    facts["curve"] = [row[0] for row in curve]
    return facts


class TrainingArtefacts:
    """The folders are checked (and made) at once, so that a run that could not save fails before training; then an
    earlier run's files are kept aside (plumbing.keep_previous), unless this run goes on from them."""

    def __init__(self, agent, args, name, title, facts, stop):
        import tensorflow as tf
        self.agent, self.title, self.stop = agent, title, stop
        self.weights_path = args.save_dir / "save_model" / f"{name}.weights.h5"
        self.graph_path = args.save_dir / "save_graph" / f"{name}.png"
        self.summary_dir = args.save_dir / "summary"
        self.scores = list(facts.get("curve", []))           # the loop appends to the resumed run's curve
        ensure_writable(self.summary_dir / name, self.weights_path.parent, self.graph_path.parent)
        keep_previous([self.weights_path, self.graph_path], args.load, folders=[self.summary_dir / name])
        if facts:
            print(f"going on from {args.load}: {len(self.scores)} episodes done, episode {len(self.scores) + 1} "
                  "is next", flush=True)
        self.writer = tf.summary.create_file_writer(str(self.summary_dir / name))
        with self.writer.as_default(step=len(self.scores)):
            tf.summary.text("hyperparameters",
                            "\n".join(f"    {key}: {value}" for key, value in sorted(vars(args).items())))

    # The weights (with the facts a resumed run needs), then the graph of the scores so far: every SAVE_EVERY
    # episodes (final=False: a failure is one line and training goes on), and once at the end or after a stop
    # (final=True: a failure exits 1). Weights that are not finite are never saved: the run stops as diverged.
    def save(self, scores, final=False):
        if getattr(self.stop, "diverged", None) is None and not finite(self.agent.model.get_weights()):
            self.stop.check_finite(float("nan"), "a weight")
        if getattr(self.stop, "diverged", None) is not None:
            return                                           # the last finite checkpoint stays; report() says so
        facts = {"episodes": len(scores)}
        if hasattr(self.agent, "epsilon"):
            facts["epsilon"] = float(self.agent.epsilon)

        def write_weights():
            save_run_weights(self.agent.model, self.weights_path, curve=scores or None, **facts)

        def write_graph():
            save_graph(self.graph_path, range(1, len(scores) + 1), scores, "episode", self.title)

        if try_save("the weights", self.weights_path.parent, write_weights, final):      # the weights first
            try_save("the score graph", self.graph_path.parent, write_graph, final)
        try_save("the TensorBoard record", self.summary_dir, self.writer.flush, final=False)

    # The run's last lines: where everything went; after a stop, one line and exit 130; after a divergence, one
    # line and exit 1 (plumbing.finish).
    def report(self):
        if getattr(self.stop, "diverged", None) is None:
            if self.stop.requested:
                print(f"interrupted: weights saved to {self.weights_path}, graph to {self.graph_path}")
            else:
                print(f"weights saved to {self.weights_path}")
                print(f"graph saved to {self.graph_path}")
                print(f"TensorBoard: tensorboard --logdir {self.summary_dir}")
        finish(self.stop, where=self.weights_path)     # says where the last finite checkpoint is, or none
