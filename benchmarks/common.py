"""What the Breakout benchmarks share: the tests' chapter loader and the machine's load, printed beside timings."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from chapters import load_module  # noqa: E402,F401  (tests/chapters.py: chapter file by path, no pytest)


def load_average():
    """Timings on a shared machine are only as good as its load: print this before and after."""
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"
