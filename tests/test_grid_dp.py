"""Policy iteration and value iteration (1-grid-world/1-, 2-): the maths, the window, the command line,
stopping by signal (also during start-up), and the GIF of --record: written whole, or one line and exit 1."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, load_module, run_script, tkinter_that_sends

PI_PATH = "1-grid-world/1-policy-iteration/policy_iteration.py"
VI_PATH = "1-grid-world/2-value-iteration/value_iteration.py"
PI_ENV_PATH = "1-grid-world/1-policy-iteration/environment.py"     # the world, its window and its pictures
VI_ENV_PATH = "1-grid-world/2-value-iteration/environment.py"
GAMMA = 0.9
# The optimal values that the book's window shows once the values stop changing (gamma = 0.9, rewards +1 on
# the circle and -1 on the triangles, 0 elsewhere), to 2 decimals, row by row.
BOOK_VALUES = np.array([[0.59, 0.66, 0.73, 0.81, 0.73],
                        [0.66, 0.59, 1.00, 0.90, 0.81],
                        [0.73, 1.00, 0.00, 1.00, 0.90],
                        [0.81, 0.90, 1.00, 0.90, 0.81],
                        [0.73, 0.81, 0.90, 0.81, 0.73]])


@pytest.fixture
def pi():
    module = load_module(PI_PATH)
    return module, module.PolicyIteration(module.Env())


@pytest.fixture
def vi():
    module = load_module(VI_PATH)
    return module, module.ValueIteration(module.Env())


def independent_optimum():
    """Q* of the grid world, computed here without the chapters' code: a transition table in numpy,
    Q-value iteration to machine precision, then checked as the exact solution of a linear system."""
    moves = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    reward_of_cell = np.zeros((5, 5))
    reward_of_cell[2, 2], reward_of_cell[1, 2], reward_of_cell[2, 1] = 1, -1, -1
    next_cell = np.zeros((25, 4), dtype=int)
    reward = np.zeros((25, 4))
    for s in range(25):
        row, col = divmod(s, 5)
        for a, (dr, dc) in enumerate(moves):
            r2, c2 = min(max(row + dr, 0), 4), min(max(col + dc, 0), 4)
            next_cell[s, a] = r2 * 5 + c2
            reward[s, a] = reward_of_cell[r2, c2]
    terminal = np.zeros(25, dtype=bool)
    terminal[12] = True
    v = np.zeros(25)
    for _ in range(2000):
        q = reward + GAMMA * v[next_cell]
        v = np.where(terminal, 0.0, q.max(axis=1))
    q = reward + GAMMA * v[next_cell]
    # The greedy policy's exact value (I - gamma P) v = r must be the same fixed point.
    greedy = q.argmax(axis=1)
    transition = np.zeros((25, 25))
    transition[np.arange(25), next_cell[np.arange(25), greedy]] = 1.0
    transition[terminal] = 0.0
    exact = np.linalg.solve(np.eye(25) - GAMMA * transition,
                            np.where(terminal, 0.0, reward[np.arange(25), greedy]))
    assert np.max(np.abs(exact - v)) < 1e-9
    return v.reshape(5, 5), q.reshape(5, 5, 4)


# ---- policy iteration: the maths ----

def test_first_evaluation_from_the_uniform_policy(pi):
    _, agent = pi
    agent.policy_evaluation()
    expected = np.zeros((5, 5))
    # One triangle next door: -1/4, at (0,2), (2,0), (1,3) and (3,1).
    expected[0, 2] = expected[2, 0] = expected[1, 3] = expected[3, 1] = -0.25
    expected[1, 1] = -0.5                                           # two triangles next door
    expected[1, 2] = expected[2, 1] = expected[2, 3] = expected[3, 2] = 0.25
    np.testing.assert_allclose(agent.value_table, expected, atol=1e-12)


def test_evaluation_is_one_synchronous_sweep(pi):
    _, agent = pi
    agent.policy_evaluation()
    agent.policy_evaluation()
    # Second sweep, (1,1): 1/4 * [up (0,1): 0 + .9*0] + [down (2,1): -1 + .9*.25] + [left (1,0): 0]
    # + [right (1,2): -1 + .9*.25] = 1/4 * (-0.775 * 2) = -0.3875. An in-place sweep would differ.
    assert agent.get_value([1, 1]) == pytest.approx(-0.3875, abs=1e-12)


def test_improvement_splits_ties_equally(pi):
    _, agent = pi
    agent.policy_improvement()          # all values 0: only the rewards of the next cells matter
    assert agent.get_policy([0, 0]) == pytest.approx([0.25] * 4)
    assert agent.get_policy([1, 1]) == pytest.approx([0.5, 0.0, 0.5, 0.0])   # up, left avoid triangles
    assert agent.get_policy([1, 2]) == pytest.approx([0.0, 1.0, 0.0, 0.0])   # down into the circle
    assert agent.get_policy([2, 2]) == []                                     # terminal: no policy


def test_get_action_samples_the_policy(pi):
    module, agent = pi
    module.random.seed(0)
    agent.policy_table[0][0] = [0.0, 0.0, 0.0, 1.0]
    assert {agent.get_action([0, 0]) for _ in range(50)} == {3}
    agent.policy_table[0][0] = [0.5, 0.5, 0.0, 0.0]
    assert {agent.get_action([0, 0]) for _ in range(200)} == {0, 1}


def test_policy_iteration_converges_to_the_optimum(pi):
    module, agent = pi
    v_star, q_star = independent_optimum()
    module.solve(agent)
    assert np.max(np.abs(np.array(agent.value_table) - v_star)) < 1e-6
    np.testing.assert_allclose(np.round(v_star, 2), BOOK_VALUES)
    for row in range(5):
        for col in range(5):
            if (row, col) == (2, 2):
                continue
            optimal = np.flatnonzero(q_star[row, col] >= q_star[row, col].max() - 1e-9)
            expected = np.zeros(4)
            expected[optimal] = 1.0 / len(optimal)
            assert agent.get_policy([row, col]) == pytest.approx(expected), (row, col)


# ---- value iteration: the maths ----

def test_first_value_iteration_sweep(vi):
    _, agent = vi
    agent.value_iteration()
    expected = np.zeros((5, 5))
    expected[1, 2] = expected[2, 1] = expected[2, 3] = expected[3, 2] = 1.0
    np.testing.assert_allclose(agent.value_table, expected, atol=1e-12)


def test_value_iteration_converges_to_the_optimum(vi):
    module, agent = vi
    v_star, q_star = independent_optimum()
    module.solve(agent)
    assert np.max(np.abs(np.array(agent.value_table) - v_star)) < 1e-6
    for row in range(5):
        for col in range(5):
            optimal = [] if (row, col) == (2, 2) else \
                list(np.flatnonzero(q_star[row, col] >= q_star[row, col].max() - 1e-9))
            assert agent.get_action([row, col]) == optimal, (row, col)
    assert agent.get_action([0, 0]) == [1, 3]      # down and right tie at the start


# ---- the windows, on a real X display ----

def cell_texts(canvas, tag):
    """{(row, col): text} of the canvas text items carrying `tag`."""
    texts = {}
    for item in canvas.find_withtag(tag):
        x, y = canvas.coords(item)
        texts[(int(y // 100), int(x // 100))] = canvas.itemcget(item, "text")
    return texts


def agent_cell(display):
    x1, y1, _, _ = display.canvas.coords("agent")
    return int(y1 // 100), int(x1 // 100)


def walk_until_stopped(display, limit_s=20):
    deadline = time.monotonic() + limit_s
    while display.moving is not None:
        assert time.monotonic() < deadline, "the agent never stopped walking"
        display.update()


def reward_labels(canvas):
    return sorted(canvas.itemcget(item, "text") for item in canvas.find_withtag("reward"))


def test_policy_iteration_window(tk_display):
    module = load_module(PI_PATH)
    random.seed(3)
    display = load_module(PI_ENV_PATH).GraphicDisplay(module.PolicyIteration(module.Env()))
    try:
        display.move_delay_ms = 1
        assert display.title() == "Policy Iteration"
        assert set(display.buttons) == {"Evaluate", "Improve", "move", "reset"}
        assert reward_labels(display.canvas) == ["R : -1.0", "R : -1.0", "R : 1.0"]

        display.buttons["Evaluate"].invoke()
        values = cell_texts(display.canvas, "value")
        assert len(values) == 25
        assert values[(0, 2)] == "-0.25" and values[(1, 1)] == "-0.50" and values[(1, 2)] == "0.25"
        assert reward_labels(display.canvas) == ["R : -1.0", "R : -1.0", "R : 1.0"]

        display.buttons["Improve"].invoke()
        arrows = {tag for item in display.canvas.find_withtag("arrow")
                  for tag in display.canvas.gettags(item) if tag.startswith("arrow-")}
        assert {"arrow-1-2-1", "arrow-0-0-1", "arrow-0-0-3"} <= arrows
        assert "arrow-1-1-3" not in arrows      # right from (1,1) enters a triangle
        assert not any(tag.startswith("arrow-2-2-") for tag in arrows)

        for _ in range(5):
            display.buttons["Evaluate"].invoke()
            display.buttons["Improve"].invoke()
        assert cell_texts(display.canvas, "value")[(0, 0)] != "0.00"
        display.buttons["move"].invoke()
        assert display.moving is not None       # the walk runs from the event loop, not a sleep loop
        walk_until_stopped(display)
        assert agent_cell(display) == (2, 2)

        display.buttons["reset"].invoke()
        assert display.canvas.find_withtag("value") == () and display.canvas.find_withtag("arrow") == ()
        assert agent_cell(display) == (0, 0)
        assert display.agent.value_table == [[0.0] * 5 for _ in range(5)]
        assert display.agent.get_policy([0, 0]) == [0.25] * 4
        assert len(reward_labels(display.canvas)) == 3
    finally:
        display.destroy()


def test_value_iteration_window(tk_display):
    module = load_module(VI_PATH)
    random.seed(5)
    display = load_module(VI_ENV_PATH).GraphicDisplay(module.ValueIteration(module.Env()))
    try:
        display.move_delay_ms = 1
        assert display.title() == "Value Iteration"
        assert set(display.buttons) == {"Calculate", "Print Policy", "Move", "Clear"}

        display.buttons["Calculate"].invoke()
        values = cell_texts(display.canvas, "value")
        assert values[(1, 2)] == "1.00" and values[(0, 0)] == "0.00"
        for _ in range(10):
            display.buttons["Calculate"].invoke()
        values = cell_texts(display.canvas, "value")
        assert [float(values[(0, col)]) for col in range(5)] == list(BOOK_VALUES[0])
        assert reward_labels(display.canvas) == ["R : -1.0", "R : -1.0", "R : 1.0"]

        display.buttons["Print Policy"].invoke()
        arrows = {tag for item in display.canvas.find_withtag("arrow")
                  for tag in display.canvas.gettags(item) if tag.startswith("arrow-")}
        assert {"arrow-0-0-1", "arrow-0-0-3", "arrow-1-1-0", "arrow-1-1-2"} <= arrows
        assert "arrow-1-1-1" not in arrows

        display.buttons["Move"].invoke()
        walk_until_stopped(display)
        assert agent_cell(display) == (2, 2)

        display.buttons["Clear"].invoke()
        assert display.canvas.find_withtag("value") == () and display.canvas.find_withtag("arrow") == ()
        assert agent_cell(display) == (0, 0)
        assert display.agent.value_table == [[0.0] * 5 for _ in range(5)]
    finally:
        display.destroy()


# ---- the command line ----

def printed_table(stdout):
    lines = stdout.splitlines()
    start = lines.index("value table:") + 1
    return np.array([[float(x) for x in line.split()] for line in lines[start:start + 5]])


@pytest.mark.parametrize("path", [PI_PATH, VI_PATH])
def test_headless_run_prints_the_converged_table(path):
    result = run_script(path, timeout=60)         # no DISPLAY: falls back to headless by itself
    assert result.returncode == 0, result.stderr
    assert "no display found: running headless" in result.stdout
    assert "Traceback" not in result.stderr
    np.testing.assert_allclose(printed_table(result.stdout), BOOK_VALUES)
    policy = result.stdout.split("policy:\n")[1].splitlines()
    assert policy[2].split()[2] == "G" and policy[0].split()[0] == "↓→"


@pytest.mark.parametrize("path", [PI_PATH, VI_PATH])
def test_no_render_says_nothing_about_displays(path):
    result = run_script(path, "--no-render", "--seed", "1", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "display" not in result.stdout
    np.testing.assert_allclose(printed_table(result.stdout), BOOK_VALUES)


@pytest.mark.parametrize("path", [PI_PATH, VI_PATH])
def test_help_and_bad_flags(path):
    result = run_script(path, "--help", timeout=60)
    assert result.returncode == 0 and "--render" in result.stdout
    result = run_script(path, "--episodes-of-doom", timeout=60)
    assert result.returncode == 2
    assert "unrecognized arguments" in result.stderr and "Traceback" not in result.stderr
    result = run_script(path, "--seed", "abc", timeout=60)
    assert result.returncode == 2 and "argument --seed: must be an integer, got 'abc'" in result.stderr
    result = run_script(path, "--seed", "-1", timeout=60)          # numpy takes 0 .. 2**32 - 1 only
    assert result.returncode == 2 and "argument --seed: must be between 0 and 2**32 - 1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("path", [PI_PATH, VI_PATH])
def test_help_shows_the_defaults(path, capsys):
    with pytest.raises(SystemExit) as done:
        load_module(path).parse_args(["--help"])
    assert done.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())          # argparse wraps lines
    assert "None: when a display is available (default: None)" in help_text
    assert "None: a different run every time (default: None)" in help_text


@pytest.mark.parametrize("path", [PI_PATH, VI_PATH])
def test_a_screen_that_does_not_answer_means_headless_with_a_note(path):
    result = run_script(path, display=":987", timeout=60)     # DISPLAY set, but no X server there
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('cannot open a window (couldn\'t connect to display ":987"): running headless\n')
    assert result.stderr == ""
    np.testing.assert_allclose(printed_table(result.stdout), BOOK_VALUES)


# ---- stopping: Ctrl-C and kill only raise a flag; this chapter saves nothing, so it just exits 130 ----

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "closed-terminal"])
@pytest.mark.parametrize("path", [PI_PATH, VI_PATH])
def test_a_signal_before_the_values_converge_exits_130_in_one_line(path, signum, monkeypatch, capsys,
                                                                   own_signal_handlers):
    # In this process, so that the signal lands for sure after the handlers are installed and before the
    # first sweep (the whole run takes milliseconds): a real signal while the world is being built.
    module = load_module(path)
    env_class = module.Env

    def env_and_get_killed():
        os.kill(os.getpid(), signum)
        return env_class()

    monkeypatch.setattr(module, "Env", env_and_get_killed)
    with pytest.raises(SystemExit) as stopped:
        module.main(["--no-render"])
    assert stopped.value.code == 130
    captured = capsys.readouterr()
    assert captured.err == "interrupted: nothing saved (this chapter saves nothing)\n"
    assert captured.out == ""                                        # no table: it never converged


@pytest.mark.parametrize("path, signum", [(PI_PATH, signal.SIGINT), (VI_PATH, signal.SIGTERM),
                                          (PI_PATH, signal.SIGHUP)],
                         ids=["policy-iteration-ctrl-c", "value-iteration-sigterm", "policy-iteration-closed-terminal"])
def test_a_signal_closes_the_window_and_exits_130_without_a_traceback(path, signum, tk_display):
    # Tk's mainloop waits inside Tcl: the script's timer lets the signal handler run and closes the window.
    child = subprocess.Popen([sys.executable, str(ROOT / path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "DISPLAY": tk_display, "PYTHONUNBUFFERED": "1"})
    try:
        first_line = child.stdout.readline()
        assert first_line.startswith("window open: "), first_line
        child.send_signal(signum)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert err == "interrupted: nothing saved (this chapter saves nothing)\n"


@pytest.mark.parametrize("path", [PI_PATH, VI_PATH])
def test_a_python_without_tkinter_runs_headless_with_a_note(path, tmp_path):
    # A Python built without Tk: make `import tkinter` fail in the child, as it does there.
    (tmp_path / "tkinter.py").write_text("raise ImportError('No module named _tkinter')\n")
    result = run_script(path, "--render", "--record", tmp_path / "path.gif", timeout=60, display=":0",
                        env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "this Python has no tkinter: running headless" in result.stdout
    assert "greedy path from the start" in result.stdout and (tmp_path / "path.gif").stat().st_size > 0


# ---- start-up and --record: a signal while starting exits 130 in one line; a GIF that cannot be written, exit 1 ----



@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "closed-terminal"])
@pytest.mark.parametrize("path", [PI_PATH, VI_PATH])
def test_a_signal_during_start_up_exits_130_in_one_line(path, signum, tmp_path):
    result = run_script(path, "--no-render", timeout=60, env=tkinter_that_sends(signum, tmp_path / "fake"))
    assert result.returncode == 130, result.stderr[-2000:]          # not killed by SIGHUP, no KeyboardInterrupt
    assert result.stderr == "interrupted: nothing saved (this chapter saves nothing)\n"
    assert result.stdout == ""


@pytest.mark.parametrize("path", [PI_PATH, VI_PATH])
def test_record_where_nothing_can_be_written_exits_1_in_one_line(path, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    # Its folder is a file: refused before anything is solved, in one line.
    result = run_script(path, "--no-render", "--record", a_file / "path.gif", timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"error: cannot write to {a_file}: File exists\n"
    assert result.stdout == ""
    # The GIF's own name is a folder: the values and the path are printed, then the GIF fails in one line.
    (tmp_path / "path.gif").mkdir()
    result = run_script(path, "--no-render", "--record", tmp_path / "path.gif", timeout=60)
    assert result.returncode == 1
    assert result.stderr == (f"error: could not save path.gif in {tmp_path} (Is a directory); "
                             "the last checkpoint saved there is kept\n")
    np.testing.assert_allclose(printed_table(result.stdout), BOOK_VALUES)
    assert "greedy path from the start" in result.stdout and "recorded" not in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "path.gif"]     # no temp file left behind


@pytest.mark.parametrize("path", [PI_PATH, VI_PATH])
def test_a_signal_during_the_gif_save_exits_130_after_writing_it(path, tmp_path, monkeypatch, capsys,
                                                                 own_signal_handlers):
    module = load_module(path)
    writing = module.show_greedy_path.__globals__["write_gif"].__globals__     # plumbing.py's names
    real_atomic_write = writing["atomic_write"]

    def atomic_write_and_a_signal_meanwhile(target, write):
        os.kill(os.getpid(), signal.SIGTERM)             # the StopFlag's handler runs here, inside the save
        real_atomic_write(target, write)

    monkeypatch.setitem(writing, "atomic_write", atomic_write_and_a_signal_meanwhile)
    with pytest.raises(SystemExit) as stopped:
        module.main(["--no-render", "--record", str(tmp_path / "path.gif")])
    assert stopped.value.code == 130
    assert "recorded " in capsys.readouterr().out
    with Image.open(tmp_path / "path.gif") as gif:        # written whole: every frame reads back
        assert gif.n_frames > 1
        for number in range(gif.n_frames):
            gif.seek(number)
            gif.load()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["path.gif"]
