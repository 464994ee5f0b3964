"""Every agent script is the chapter; the jobs every chapter shares live in one plumbing.py per folder.

- The copies of plumbing.py are the same bytes in every chapter folder (compared by hash), so a folder copied
  alone still runs and no copy drifts.
- No chapter file defines (or assigns) a name that plumbing.py defines, nor a function whose body is one of
  plumbing's under another name: the copy that runs is always plumbing's.
- Agent scripts do no plumbing job themselves, read in the book's order (the training loop before the command
  line, playing after training, main last) and stay within their line budgets.
- Inside a folder no two modules import each other (no circles), plumbing.py imports no chapter file and starts
  without TensorFlow, matplotlib or Pillow.
"""
import ast
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

# Each chapter's agent script, the top-level definition that holds its training (or solving) loop, and its budget
# of non-blank lines (docstring included): about 1.3-2 times the book's own file.
AGENT_SCRIPTS = {
    "1-grid-world/1-policy-iteration/policy_iteration.py": ("solve", 160),
    "1-grid-world/2-value-iteration/value_iteration.py": ("solve", 150),
    "1-grid-world/3-monte-carlo/mc_agent.py": ("train", 130),
    "1-grid-world/4-sarsa/sarsa_agent.py": ("train", 120),
    "1-grid-world/5-q-learning/q_learning_agent.py": ("train", 120),
    "1-grid-world/6-deep-sarsa/deep_sarsa_agent.py": ("train", 220),
    "1-grid-world/7-reinforce/reinforce_agent.py": ("train", 220),
    "2-cartpole/1-dqn/cartpole_dqn.py": ("train", 230),
    "2-cartpole/2-actor-critic/cartpole_a2c.py": ("train", 220),
    "3-atari/1-breakout-dqn/breakout_dqn.py": ("train", 340),
    "3-atari/2-breakout-a3c/breakout_a3c.py": ("Agent", 400),      # the actor-learner thread's loop
}
FOLDERS = sorted({(ROOT / script).parent for script in AGENT_SCRIPTS})
PLUMBING = ROOT / "1-grid-world/1-policy-iteration/plumbing.py"
CHAPTER_FILES = sorted(path for folder in FOLDERS for path in folder.glob("*.py") if path.name != "plumbing.py")
# Jobs that belong to plumbing.py, never to an agent script (what each marker gives away).
PLUMBING_JOBS = {"signal.signal(": "installs signal handlers", "os.replace(": "writes files atomically",
                 "tempfile": "checks folders", "ArgumentTypeError": "checks argument values",
                 "matplotlib": "draws graphs", "from PIL": "writes images", "/proc/cpuinfo": "reads CPU flags"}


def relative(path):
    return Path(path).relative_to(ROOT).as_posix()


def top_level(tree):
    """{name: node} of the module's top-level functions and classes."""
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def plumbing_tree():
    return ast.parse(PLUMBING.read_text(encoding="utf-8"))


def plumbing_names():
    tree = plumbing_tree()
    names = set(top_level(tree))
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def body_shape(function):
    """A function's body with names kept, docstring and position dropped: equal shapes are copies."""
    body = function.body[1:] if ast.get_docstring(function) else function.body
    return ast.dump(ast.Module(body=body, type_ignores=[]), annotate_fields=False)


def test_every_chapter_folder_has_the_same_plumbing():
    hashes = {}
    for folder in FOLDERS:
        path = folder / "plumbing.py"
        assert path.is_file(), f"no plumbing.py in {relative(folder)}"
        hashes[relative(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    reference = hashes[relative(PLUMBING)]
    different = sorted(path for path, digest in hashes.items() if digest != reference)
    assert not different, f"{different} differ from {relative(PLUMBING)}: copy it to every folder"


@pytest.mark.parametrize("path", CHAPTER_FILES, ids=relative)
def test_no_chapter_file_defines_a_plumbing_job_again(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = plumbing_names()
    shapes = {body_shape(node): name for name, node in top_level(plumbing_tree()).items()
              if isinstance(node, ast.FunctionDef) and len(node.body) > 2}
    methods = {id(item) for node in ast.walk(tree) if isinstance(node, ast.ClassDef) for item in node.body}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            assert id(node) in methods or node.name not in names, \
                f"{relative(path)}:{node.lineno} defines {node.name}, a plumbing job"
            if isinstance(node, ast.FunctionDef):
                copied = shapes.get(body_shape(node))
                assert copied is None, f"{relative(path)}:{node.lineno} {node.name} is plumbing's {copied} renamed"
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                assert not (isinstance(target, ast.Name) and target.id in names and target.id != "__doc__"), \
                    f"{relative(path)}:{node.lineno} assigns {target.id}, a plumbing name"
        elif isinstance(node, ast.ImportFrom) and node.module != "plumbing":
            clash = names & {alias.asname or alias.name for alias in node.names}
            assert not clash, f"{relative(path)}:{node.lineno} imports {clash} from {node.module}, not plumbing"


@pytest.mark.parametrize("script", sorted(AGENT_SCRIPTS))
def test_agent_script_does_no_plumbing_job_itself(script):
    text = (ROOT / script).read_text(encoding="utf-8")
    found = {marker: job for marker, job in PLUMBING_JOBS.items() if marker in text}
    assert not found, f"{script} {', '.join(found.values())} ({', '.join(found)}): that is plumbing.py's job"
    assert "from plumbing import" in text


@pytest.mark.parametrize("script", sorted(AGENT_SCRIPTS))
def test_agent_script_reads_in_the_books_order(script):
    """docstring, ..., the training loop, playing, the command line, main, and `if __name__` last."""
    tree = ast.parse((ROOT / script).read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{script} has no docstring naming its chapter"
    order = list(top_level(tree))
    loop = AGENT_SCRIPTS[script][0]
    assert loop in order and "parse_args" in order and "main" in order, f"{script}: {order}"
    assert order.index(loop) < order.index("parse_args"), f"{script}: the command line comes before {loop}"
    for watching in ("play", "play_main"):
        if watching in order:
            assert order.index(loop) < order.index(watching) < order.index("parse_args"), \
                f"{script}: {watching} must come after {loop} and before the command line"
    assert order[-1] == "main", f"{script}: main must be the last definition, not {order[-1]}"
    last = tree.body[-1]
    assert isinstance(last, ast.If) and "__name__" in ast.unparse(last.test), f"{script} must end with main()"


@pytest.mark.parametrize("script", sorted(AGENT_SCRIPTS))
def test_agent_script_stays_within_its_line_budget(script):
    lines = [line for line in (ROOT / script).read_text(encoding="utf-8").splitlines() if line.strip()]
    budget = AGENT_SCRIPTS[script][1]
    assert len(lines) <= budget, f"{script}: {len(lines)} non-blank lines, budget {budget}"
    too_long = [number for number, line in enumerate(lines, 1) if len(line) > 120]
    assert not too_long, f"{script}: lines longer than 120 characters (packed statements?) at {too_long}"


def local_imports(path, local):
    """Names of this folder's modules that `path` imports, anywhere in the file."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module)
    return imported & local


@pytest.mark.parametrize("folder", FOLDERS, ids=relative)
def test_no_two_modules_of_a_folder_import_each_other(folder):
    modules = {path.stem: path for path in folder.glob("*.py")}
    graph = {name: local_imports(path, set(modules) - {name}) for name, path in modules.items()}
    assert graph["plumbing"] == set(), f"plumbing.py imports {graph['plumbing']}"

    def reaches(start, target, seen=()):
        return any(after == target or (after not in seen and reaches(after, target, (*seen, after)))
                   for after in graph[start])
    circles = sorted(name for name in graph if reaches(name, name))
    assert not circles, f"{relative(folder)}: an import circle through {circles} ({graph})"


def test_plumbing_starts_without_heavy_libraries():
    heavy = ("numpy", "tensorflow", "keras", "matplotlib", "PIL", "h5py", "gymnasium")
    code = (f"import sys; sys.path.insert(0, {str(PLUMBING.parent)!r}); import plumbing; "
            f"print([name for name in {heavy!r} if name in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing plumbing.py loads {result.stdout.strip()}"


def test_a_tabular_chapter_starts_without_tensorflow():
    folder = ROOT / "1-grid-world/4-sarsa"
    code = (f"import sys; sys.path.insert(0, {str(folder)!r}); import sarsa_agent; "
            "print([name for name in ('tensorflow', 'keras', 'matplotlib') if name in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing sarsa_agent.py loads {result.stdout.strip()}"


def test_both_cartpole_folders_share_one_environment():
    """(The moving-obstacle world's two copies differ in their title and step reward: tests/test_grid_deep.py.)"""
    first, second = ((ROOT / folder / "environment.py").read_bytes() for folder in ("2-cartpole/1-dqn",
                                                                                    "2-cartpole/2-actor-critic"))
    assert first == second, "2-cartpole/1-dqn/environment.py and 2-cartpole/2-actor-critic/environment.py differ"


def test_the_repository_stays_a_readers_download():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    sizes = {name: (ROOT / name).stat().st_size for name in listed.stdout.decode().split("\0")
             if name and (ROOT / name).is_file()}
    total = sum(sizes.values())
    biggest = sorted(sizes, key=sizes.get)[-3:]
    assert total <= 16 * 1024 * 1024, f"tracked files hold {total / 2 ** 20:.1f} MiB; the biggest: {biggest}"


def test_no_script_raises_keyboard_interrupt_from_a_signal_handler():
    for path in [*CHAPTER_FILES, *(folder / "plumbing.py" for folder in FOLDERS)]:
        assert "raise KeyboardInterrupt" not in path.read_text(encoding="utf-8"), relative(path)


# ---- the promise that nothing is lost: plumbing's own pieces, one by one ----
def plumbing_module():
    from conftest import load_module
    return load_module("1-grid-world/1-policy-iteration/plumbing.py")


def test_keep_previous_sets_an_earlier_run_aside_and_says_so(tmp_path, capsys):
    plumbing = plumbing_module()
    weights, graph, summary = tmp_path / "run.weights.h5", tmp_path / "run.png", tmp_path / "summary" / "run"
    weights.write_text("old weights")
    summary.mkdir(parents=True)
    (summary / "events").write_text("old events")
    kept = plumbing.keep_previous([weights, graph], folders=[summary])
    assert kept == [tmp_path / "run.previous.weights.h5", tmp_path / "summary" / "run.previous"]
    assert capsys.readouterr().out == f"an earlier run's files are kept as {kept[0]}, {kept[1]}\n"
    assert kept[0].read_text() == "old weights" and (kept[1] / "events").read_text() == "old events"
    assert not weights.exists() and not graph.exists() and not summary.exists()
    summary.mkdir()                                          # an empty folder holds no run: nothing to keep
    assert plumbing.keep_previous([], folders=[summary]) == [] and capsys.readouterr().out == ""
    (graph / "in the way").mkdir(parents=True)              # a folder where a file goes is no earlier run's file
    assert plumbing.keep_previous([graph]) == [] and graph.is_dir()


def test_keep_previous_never_replaces_the_file_a_run_resumes_from(tmp_path, capsys):
    plumbing = plumbing_module()
    weights = tmp_path / "run.weights.h5"
    weights.write_text("this run")
    assert plumbing.keep_previous([weights], resumed_from=weights) == []       # going on in place
    assert weights.read_text() == "this run" and capsys.readouterr().out == ""
    previous = tmp_path / "run.previous.weights.h5"
    previous.write_text("the run before")
    kept = plumbing.keep_previous([weights], resumed_from=previous)           # going on from the previous one
    assert kept == [tmp_path / "run.previous-2.weights.h5"]
    assert previous.read_text() == "the run before" and kept[0].read_text() == "this run"


def test_a_save_that_fails_is_one_line_periodic_or_final(tmp_path, capsys):
    plumbing = plumbing_module()

    def full_disk():
        raise OSError(28, "No space left on device")
    assert plumbing.try_save("the weights", tmp_path, full_disk, final=False) is False
    assert capsys.readouterr().out == (f"could not save the weights in {tmp_path} (No space left on device): the last "
                                       "checkpoint there is kept; trying again at the next save\n")
    with pytest.raises(SystemExit) as stopped:
        plumbing.try_save("the weights", tmp_path, full_disk, final=True)
    assert str(stopped.value).startswith(f"error: could not save the weights in {tmp_path} (No space left")
    assert plumbing.try_save("the weights", tmp_path, lambda: None, final=True) is True


def test_weights_and_their_facts_travel_in_one_file_and_are_checked(tmp_path):
    keras = pytest.importorskip("keras")
    plumbing = plumbing_module()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = tmp_path / "run.weights.h5"
    plumbing.save_run_weights(model, path, curve=[[1.0], [2.5]], episodes=2, epsilon=0.5)
    facts = plumbing.run_facts(path, checks={"epsilon": lambda e: 0.0 <= e <= 1.0})
    assert facts == {"episodes": 2, "epsilon": 0.5, "curve": [[1.0], [2.5]]}
    plumbing.save_run_weights(model, path, curve=[[1.0]], episodes=1, epsilon=float("nan"))
    with pytest.raises(SystemExit) as refused:
        plumbing.run_facts(path, checks={"epsilon": lambda e: 0.0 <= e <= 1.0})
    assert "epsilon = nan is out of range" in str(refused.value)
    model.layers[0].kernel.assign([[float("nan")], [0.0]])
    assert not plumbing.finite(model.get_weights())
    plumbing.save_run_weights(model, path)
    with pytest.raises(SystemExit) as refused:
        plumbing.load_weights(model, path, "train anew")
    assert "not finite" in str(refused.value)
    fifo = tmp_path / "fifo.weights.h5"
    os.mkfifo(fifo)
    with pytest.raises(SystemExit) as refused:                # reading a FIFO would wait for ever
        plumbing.load_weights(model, fifo, "train anew")
    assert "not a regular file" in str(refused.value)


def test_the_stop_flag_stops_on_non_finite_numbers_and_finish_says_how_it_ended(own_signal_handlers, tmp_path):
    plumbing = plumbing_module()
    stop = plumbing.StopFlag()
    assert stop.check_finite(1.5) == 1.5 and not stop.requested
    stop.check_finite(float("nan"))
    assert stop.requested and stop.diverged == "the loss"
    checkpoint = tmp_path / "x.weights.h5"
    with pytest.raises(SystemExit) as ended:
        plumbing.finish(stop, where=checkpoint)               # diverged before its first save
    assert str(ended.value).startswith("error: training diverged (the loss is not a finite number): stopped; "
                                       "nothing was saved")
    checkpoint.write_text("weights")
    with pytest.raises(SystemExit) as ended:
        plumbing.finish(stop, where=checkpoint)
    assert f"the last finite checkpoint is kept ({checkpoint})" in str(ended.value)
    stop = plumbing.StopFlag()
    os.kill(os.getpid(), signal.SIGHUP)                       # a closed terminal: a stop like Ctrl-C
    assert stop.requested
    with pytest.raises(SystemExit) as ended:
        plumbing.finish(stop)
    assert ended.value.code == 130
    assert plumbing.finish(plumbing.NEVER) is None and plumbing.NEVER.check_finite(float("nan")) != 0


def test_a_signal_during_start_up_and_a_closed_output_do_not_end_a_script_early():
    """catch_signals_at_start: a SIGHUP before main() is kept for its StopFlag; a pipe whose reader is gone makes
    print() go quiet instead of raising (the run would otherwise die before it saves)."""
    code = ("import os, signal, sys; sys.path.insert(0, {folder!r}); import plumbing; "
            "plumbing.catch_signals_at_start('__main__'); os.kill(os.getpid(), signal.SIGHUP); "
            "stop = plumbing.StopFlag(); os.close(1); print('x' * 100000); sys.stdout.flush(); "
            "sys.exit(130 if stop.requested else 3)").format(folder=str(PLUMBING.parent))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr


def test_values_that_cannot_work_are_refused_before_anything_is_made(tmp_path, monkeypatch):
    import argparse
    plumbing = plumbing_module()
    for bad in ("", "  "):
        with pytest.raises(argparse.ArgumentTypeError):
            plumbing.save_folder(bad)
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for looping in (tmp_path / "a", tmp_path / "a" / "run"):
        with pytest.raises(argparse.ArgumentTypeError):
            plumbing.save_folder(str(looping))
    assert plumbing.save_folder(str(tmp_path / "new")) == tmp_path / "new"
    for bad in ("-5", str(2 ** 32), "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            plumbing.seed_number(bad)
    available = plumbing.memory_available()
    assert available is None or available > 0
    parser = argparse.ArgumentParser(prog="x")
    monkeypatch.setattr(plumbing, "memory_available", lambda: 2 ** 30)
    with pytest.raises(SystemExit):
        plumbing.check_memory(parser, "--memory-size", 2 ** 31, "a replay memory")
    plumbing.check_memory(parser, "--memory-size", 2 ** 29, "a replay memory")


def test_a_full_disk_under_a_keras_save_is_one_line_not_a_crash(tmp_path):
    """HDF5 writing to a disk that fails leaves the process to crash as it exits (exit 139); save_run_weights builds
    the file in memory, so a full disk (here: a file size limit) is one line and exit 1."""
    pytest.importorskip("keras")
    code = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)         # a write past the limit fails with EFBIG instead
sys.path.insert(0, {str(PLUMBING.parent)!r})
import plumbing, keras
model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256), keras.layers.Dense(256)])
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
plumbing.try_save("the weights", {str(tmp_path)!r},
                  lambda: plumbing.save_run_weights(model, {str(tmp_path / 'run.weights.h5')!r}, episodes=1), final=True)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 1, result.stderr[-2000:]            # not -11 / 139: no segmentation fault
    assert f"error: could not save the weights in {tmp_path} (File too large)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())                             # nothing half-written, no temp file


def test_the_grid_worlds_draw_their_pictures_with_one_text():
    """grid_picture and grid_animation (what --record draws) live in each grid folder's environment.py, so that a
    folder copied alone still records: the copies must stay the same text."""
    sources = {}
    for path in sorted(ROOT.glob("1-grid-world/*/environment.py")):
        text = path.read_text(encoding="utf-8")
        for name, node in top_level(ast.parse(text)).items():
            if name in ("grid_picture", "grid_animation"):
                sources.setdefault(name, {})[relative(path)] = ast.get_source_segment(text, node)
    assert set(sources) == {"grid_picture", "grid_animation"}
    for name, copies in sources.items():
        assert len(copies) == 7, f"{name} is missing in some grid folder: {sorted(copies)}"
        assert len(set(copies.values())) == 1, f"{name} differs between {sorted(copies)}"


def test_a_gif_that_cannot_be_written_is_one_line_and_exit_1(tmp_path):
    plumbing = plumbing_module()
    (tmp_path / "walk.gif").mkdir()                            # a folder where the GIF goes
    with pytest.raises(SystemExit) as refused:
        plumbing.write_gif(tmp_path / "walk.gif", [plumbing.half_size(np_frame()) for _ in range(2)], 0.1)
    assert str(refused.value).startswith(f"error: could not save walk.gif in {tmp_path} (")
    assert not list(tmp_path.glob(".tmp-*"))


def np_frame():
    import numpy as np
    return np.zeros((20, 30, 3), np.uint8)
