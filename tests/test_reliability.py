"""Nothing a reader trained is ever lost: a stress test of every chapter's training script.

Each case starts a short real run and sends a stop signal (Ctrl-C, `kill` or a closed terminal: SIGINT, SIGTERM
or SIGHUP) at a random moment: during start-up (TensorFlow loading), during training, or during a save (a second
signal sent from inside the save that follows the first). Whatever the moment, the run must end the way the
README promises:

- exit 130 (each run is long enough that only the signal ends it), never a traceback or a crash;
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

# A run of every training script that only a signal ends: (script, its arguments but --save-dir). (The dynamic
# programming chapters solve their grid in milliseconds and save nothing: tests/test_grid_dp.py stops them.)
RUNS = {
    "mc": ("1-grid-world/3-monte-carlo/mc_agent.py", ["--no-render", "--episodes", 10_000_000]),
    "sarsa": ("1-grid-world/4-sarsa/sarsa_agent.py", ["--no-render", "--episodes", 10_000_000]),
    "q_learning": ("1-grid-world/5-q-learning/q_learning_agent.py", ["--no-render", "--episodes", 10_000_000]),
    "deep_sarsa": ("1-grid-world/6-deep-sarsa/deep_sarsa_agent.py", ["--no-render", "--episodes", 100_000]),
    "reinforce": ("1-grid-world/7-reinforce/reinforce_agent.py", ["--no-render", "--episodes", 100_000]),
    "cartpole_dqn": ("2-cartpole/1-dqn/cartpole_dqn.py", ["--episodes", 100_000]),
    "cartpole_a2c": ("2-cartpole/2-actor-critic/cartpole_a2c.py", ["--episodes", 100_000]),
    "breakout_dqn": ("3-atari/1-breakout-dqn/breakout_dqn.py",
                     ["--episodes", 100_000, "--memory-size", 2000, "--train-start", 500]),
    "breakout_a3c": ("3-atari/2-breakout-a3c/breakout_a3c.py",
                     ["--threads", 2, "--max-steps", 10 ** 9, "--save-every", 1]),
}
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
CASES_PER_SCRIPT = 1


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
    assert result.returncode == 130, described
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, described
    own_lines = [line for line in result.stderr.splitlines() if line.startswith(SCRIPT_LINES_ON_STDERR)]
    assert len(own_lines) <= 1, described
    for saved in Path(tmp_path).rglob("*"):
        if saved.is_file() and saved.parent.name in ("save_model", "save_graph") and not saved.name.startswith("."):
            assert whole(saved), f"{saved} is not whole; {described}"
    leftovers = [path.name for path in Path(tmp_path).rglob(".tmp-*")]
    assert not leftovers, f"half-written files left behind: {leftovers}; {described}"


@pytest.mark.parametrize("name", ["sarsa", "cartpole_dqn"])
def test_closing_the_terminal_saves_and_exits_130(name, tmp_path):
    """A real terminal (a pseudo-terminal) closed under a running script: SIGHUP, and every write after it fails.
    The run must still save its checkpoint and exit 130."""
    import os
    import pty
    import sys
    from conftest import ROOT
    script, arguments = RUNS[name]
    pid, terminal = pty.fork()
    if pid == 0:                                          # the child: the script, on the pseudo-terminal
        os.environ.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
        os.environ.pop("DISPLAY", None)
        os.execv(sys.executable, [sys.executable, str(ROOT / script), *map(str, arguments),
                                  "--save-dir", str(tmp_path)])
    seen = b""
    try:
        while seen.count(b"episode: ") < 3:              # three episodes printed: it is training
            chunk = os.read(terminal, 4096)
            if not chunk:
                break
            seen += chunk
    except OSError:
        pass
    os.close(terminal)                                    # the window closes: SIGHUP, and a dead terminal
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 130, seen[-2000:].decode(errors="replace")
    saved = [path for path in (tmp_path / "save_model").glob("*") if not path.name.startswith(".")]
    assert saved and all(whole(path) for path in saved), saved
