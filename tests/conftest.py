"""Shared test helpers: every chapter's tests use these, none copies them.

- ``load_module("1-grid-world/4-sarsa/sarsa_agent.py")`` imports a chapter file by path (chapter folders
  start with digits, so they are not packages). The chapter's own folder is put on ``sys.path`` while it
  loads, so its ``import environment`` finds the right ``environment.py`` even though seven folders have one.
- ``run_script(path, *args)`` runs a chapter script as a subprocess from a temporary working directory
  (proving it does not depend on the cwd) with no display unless one is asked for.
- the ``tk_display`` fixture starts a real X server (Xvfb) once per session and points ``DISPLAY`` at it.
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Quiet, deterministic backends for everything the tests import or start.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

_loaded = {}


def load_module(relpath):
    """Import a chapter file by its path relative to the repository root (cached per path)."""
    path = (ROOT / relpath).resolve()
    if path in _loaded:
        return _loaded[path]
    name = "chapter_" + re.sub(r"\W", "_", str(Path(relpath).with_suffix("")))
    folder = str(path.parent)
    # Every grid-world chapter has its own environment.py: forget the previous chapter's one.
    sys.modules.pop("environment", None)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
        sys.modules.pop("environment", None)
    _loaded[path] = module
    return module


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
