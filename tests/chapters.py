"""Load a chapter file by its path (chapter folders start with digits, so they are not packages).
Plain standard library, so that benchmarks/ can use it without pytest installed."""
import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_loaded = {}
FOLDER_MODULES = ("environment", "plumbing", "artefacts", "training_record", "transitions")  # in several folders


def load_module(relpath):
    """Import a chapter file by its path relative to the repository root (cached per path)."""
    path = (ROOT / relpath).resolve()
    if path in _loaded:
        return _loaded[path]
    name = "chapter_" + re.sub(r"\W", "_", str(Path(relpath).with_suffix("")))
    folder = str(path.parent)
    # Every chapter folder has its own environment.py and plumbing.py: forget the previous chapter's ones.
    for shared_name in FOLDER_MODULES:
        sys.modules.pop(shared_name, None)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
        for shared_name in FOLDER_MODULES:
            sys.modules.pop(shared_name, None)
    _loaded[path] = module
    return module
