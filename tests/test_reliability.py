"""Nothing a reader trained is ever lost: a stress test of every chapter's training script.

Each case starts a short real run and sends a stop signal (Ctrl-C, `kill` or a closed terminal: SIGINT, SIGTERM
or SIGHUP) at a random moment: during start-up (TensorFlow loading), during training, or during a save (a second
signal sent from inside the save that follows the first). Whatever the moment, the run must end the way the
README promises:

- exit 130 (stopped) or 0 (it had finished before the signal came), never a traceback or a crash;
- at most one line on stderr from the script (TensorFlow's own start-up notes aside);
- every checkpoint it left is whole: a weights file opens and holds only finite numbers, a table loads.

The moments are drawn from a seeded generator (CASES below lists them, so a failure names its case and can be run
again alone); they start one second after launch, once the script's own first lines have run (the instants
before that belong to Python's start, not to the script). The chapter-by-chapter behaviours (saving that fails,
reruns, resuming, NaN, bad values) are tested in each chapter's own test module.
"""
import random
import signal
from pathlib import Path

import numpy as np
import pytest

from conftest import interrupt_script

# A short run of every training script: (script, its arguments but --save-dir).
RUNS = {
    "policy_iteration": ("1-grid-world/1-policy-iteration/policy_iteration.py", ["--no-render"]),
    "value_iteration": ("1-grid-world/2-value-iteration/value_iteration.py", ["--no-render"]),
    "mc": ("1-grid-world/3-monte-carlo/mc_agent.py", ["--no-render", "--episodes", 3000]),
    "sarsa": ("1-grid-world/4-sarsa/sarsa_agent.py", ["--no-render", "--episodes", 3000]),
    "q_learning": ("1-grid-world/5-q-learning/q_learning_agent.py", ["--no-render", "--episodes", 3000]),
    "deep_sarsa": ("1-grid-world/6-deep-sarsa/deep_sarsa_agent.py", ["--no-render", "--episodes", 60]),
    "reinforce": ("1-grid-world/7-reinforce/reinforce_agent.py", ["--no-render", "--episodes", 60]),
    "cartpole_dqn": ("2-cartpole/1-dqn/cartpole_dqn.py", ["--episodes", 40]),
    "cartpole_a2c": ("2-cartpole/2-actor-critic/cartpole_a2c.py", ["--episodes", 40]),
    "breakout_dqn": ("3-atari/1-breakout-dqn/breakout_dqn.py",
                     ["--episodes", 3, "--memory-size", 2000, "--train-start", 500]),
    "breakout_a3c": ("3-atari/2-breakout-a3c/breakout_a3c.py",
                     ["--threads", 2, "--max-steps", 3000, "--save-every", 1]),
}
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
CASES_PER_SCRIPT = 2


def draw_cases(seed=20261206):
    """(name, signal, seconds after launch, second signal during the save?) for every script, reproducibly."""
    rng = random.Random(seed)
    return [(name, rng.choice(SIGNALS), round(rng.uniform(1.0, 9.0), 2), rng.random() < 0.5)
            for name in RUNS for _ in range(CASES_PER_SCRIPT)]


CASES = draw_cases()


def case_id(case):
    name, signum, seconds, during_save = case
    return f"{name}-{signal.Signals(signum).name}-{seconds}s" + ("-and-during-save" if during_save else "")


def whole(path):
    """Does this saved file load, holding finite numbers only? (h5 weights are read with h5py, as Keras does.)"""
    if path.suffix == ".npy":
        return bool(np.isfinite(np.load(path)).all())
    if path.name.endswith(".h5"):
        import h5py
        arrays = []
        with h5py.File(path, "r") as file:
            file.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
        return bool(arrays) and all(np.isfinite(np.asarray(array, dtype=np.float64)).all() for array in arrays
                                    if np.asarray(array).dtype.kind in "fiu")
    return path.stat().st_size > 0


SCRIPT_LINES_ON_STDERR = ("interrupted", "error:", "could not save")   # the one line a script may write there


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_signal_at_any_moment_ends_the_run_as_promised(case, tmp_path):
    name, signum, seconds, during_save = case
    script, arguments = RUNS[name]
    result = interrupt_script(script, *arguments, "--save-dir", tmp_path, when=lambda line: False, after=seconds,
                              signum=signum, second_signal_during_save=during_save, timeout=300)
    described = (f"{case_id(case)}: exit {result.returncode}\nstdout tail:\n{result.stdout[-1500:]}\n"
                 f"stderr:\n{result.stderr[-1500:]}")
    assert result.returncode in (0, 130), described
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, described
    own_lines = [line for line in result.stderr.splitlines() if line.startswith(SCRIPT_LINES_ON_STDERR)]
    assert len(own_lines) <= 1, described
    for saved in Path(tmp_path).rglob("*"):
        if saved.is_file() and saved.parent.name in ("save_model", "save_graph") and not saved.name.startswith("."):
            assert whole(saved), f"{saved} is not whole; {described}"
    leftovers = [path.name for path in Path(tmp_path).rglob(".tmp-*")]
    assert not leftovers, f"half-written files left behind: {leftovers}; {described}"
