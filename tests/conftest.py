"""Shared test helpers: every chapter's tests use these, none copies them.

- ``load_module("1-grid-world/4-sarsa/sarsa_agent.py")`` (tests/chapters.py, shared with benchmarks/) imports a chapter file by path (chapter folders
  start with digits, so they are not packages). The chapter's own folder is put on ``sys.path`` while it
  loads, so its ``import environment`` finds the right ``environment.py`` even though seven folders have one.
- ``run_script(path, *args)`` runs a chapter script as a subprocess from a temporary working directory
  (proving it does not depend on the cwd) with no display unless one is asked for.
- the ``tk_display`` fixture starts a real X server (Xvfb) once per session and points ``DISPLAY`` at it.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from chapters import ROOT, load_module  # noqa: E402,F401  (tests/chapters.py: no pytest needed)

# Quiet, deterministic backends for everything the tests import or start.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

def run_script(relpath, *args, timeout=300, display=None, cwd=None, env=None):
    """Run ``python <relpath> <args>`` from a temporary cwd; return the CompletedProcess (text output).

    ``display`` is the DISPLAY to give the child (None: no display at all, so the script runs headless).
    """
    child_env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    child_env.update({"PYTHONUNBUFFERED": "1", "KERAS_BACKEND": "tensorflow",
                      "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"})
    if display:
        child_env["DISPLAY"] = display
    if env:
        child_env.update(env)
    with tempfile.TemporaryDirectory() as tmp_cwd:
        return subprocess.run([sys.executable, str(ROOT / relpath), *map(str, args)],
                              cwd=cwd or tmp_cwd, env=child_env, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="session")
def tk_display():
    """A real X display (Xvfb) for Tk tests; yields the DISPLAY string and sets it in os.environ."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        if os.environ.get("CI"):
            pytest.fail("Xvfb is not installed (apt-get install -y xvfb)")
        pytest.skip("Xvfb is not installed (apt-get install -y xvfb)")
    read_fd, write_fd = os.pipe()
    # -displayfd: Xvfb picks a free display number and writes it to the pipe once it accepts clients.
    server = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24",
                               "-nolisten", "tcp"], pass_fds=(write_fd,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        pytest.fail("Xvfb did not start")
    display = f":{number}"
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    yield display
    if previous is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = previous
    server.terminate()
    server.wait(timeout=10)


# ---- one helper each for interrupting a script, truncating a file and reading printed scores ----
# A launcher that runs a chapter script as __main__ and, with RL_SIGNAL_DURING_SAVE=1, sends the process a
# second SIGINT from inside its first atomic save (the first os.replace after a signal was received): the
# second signal lands during the save on purpose, not by luck of timing.
_LAUNCHER = r'''
import os, runpy, signal, sys
if os.environ.get("RL_SIGNAL_DURING_SAVE") == "1":
    real_replace, real_signal, seen = os.replace, signal.signal, []

    def recording_signal(signum, handler):          # remember the script's handler, call it, note the signal
        if callable(handler):
            def wrapped(number, frame, handler=handler):
                seen.append(number)
                return handler(number, frame)
            return real_signal(signum, wrapped)
        return real_signal(signum, handler)

    def replace_with_a_second_signal(source, target):
        if seen and not getattr(replace_with_a_second_signal, "sent", False):
            replace_with_a_second_signal.sent = True
            os.kill(os.getpid(), signal.SIGINT)
            print("test: second SIGINT sent during the save", flush=True)
        return real_replace(source, target)
    signal.signal, os.replace = recording_signal, replace_with_a_second_signal
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
'''


def interrupt_script(relpath, *args, when=lambda line: line.startswith("episode: "), signum=signal.SIGINT,
                     second_signal_during_save=False, timeout=300, cwd=None, after=None):
    """Start ``python <relpath> <args>``, send ``signum`` once a stdout line satisfies ``when`` (None: at once,
    as soon as the process has started) or, with ``after``, that many seconds after the start, whichever comes
    first; then wait for it. With ``second_signal_during_save`` a second SIGINT is sent from inside the script's
    first save after the signal. Returns a CompletedProcess."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env.update({"PYTHONUNBUFFERED": "1", "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2",
                "MPLBACKEND": "Agg", "RL_SIGNAL_DURING_SAVE": "1" if second_signal_during_save else "0"})
    with tempfile.TemporaryDirectory() as tmp_cwd:
        child = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(ROOT / relpath), *map(str, args)],
                                 cwd=cwd or tmp_cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        errors = []
        reader = threading.Thread(target=lambda: errors.append(child.stderr.read()), daemon=True)
        reader.start()                             # stderr drains on its own, so no pipe can fill up
        lines, sent, lock = [], [when is None], threading.Lock()

        def send_once():
            with lock:
                if not sent[0] and child.poll() is None:
                    child.send_signal(signum)
                sent[0] = True
        timer = threading.Timer(after, send_once) if after is not None else None
        try:
            if sent[0]:
                child.send_signal(signum)
            if timer is not None:
                timer.start()
            for line in child.stdout:              # every line, also those after the signal
                lines.append(line)
                if not sent[0] and when(line):
                    send_once()
            child.wait(timeout=timeout)
            reader.join(timeout=timeout)
        finally:
            if timer is not None:
                timer.cancel()
            child.kill()
        out, err = "".join(lines), "".join(errors)
        return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def tkinter_that_sends(signum, folder):
    """PYTHONPATH for a child whose `import tkinter` (environment.py's, while the script starts up) sends the process
    `signum` and then fails as on a Python without Tk: a signal that lands, for sure, during start-up."""
    folder.mkdir()
    (folder / "tkinter.py").write_text("import os, signal\n"
                                       f"os.kill(os.getpid(), signal.{signal.Signals(signum).name})\n"
                                       "raise ImportError('No module named _tkinter')\n")
    return {"PYTHONPATH": str(folder)}


def truncate_file(source, target=None, keep=0.5):
    """Write the first ``keep`` fraction of ``source``'s bytes to ``target`` (default: in place); returns it."""
    data = Path(source).read_bytes()
    target = Path(target or source)
    target.write_bytes(data[:int(len(data) * keep)])
    return target


def printed_scores(stdout):
    """The scores of the ``episode: N | score: X | ...`` lines a script printed, in order."""
    return [float(match) for match in re.findall(r"^episode: \d+ \| score: (-?[\d.]+)", stdout, re.MULTILINE)]


def printed_mean(stdout):
    """X of the final ``mean score: X over N episodes`` line (fails the test if there is none)."""
    match = re.search(r"^mean score: (-?[\d.]+) over \d+ episodes", stdout, re.MULTILINE)
    assert match, f"no 'mean score' line in:\n{stdout[-2000:]}"
    return float(match[1])


@pytest.fixture
def own_signal_handlers():
    """main() run in this process installs its StopFlag for SIGINT/SIGTERM/SIGHUP: give pytest its handlers back."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def chapter_files(script):
    """Every file in the script's chapter folder (bytecode caches aside), with its size and change time."""
    folder = (ROOT / script).parent
    return {path: (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.rglob("*")
            if "__pycache__" not in path.parts}
