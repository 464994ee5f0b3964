"""The plumbing block: where chapters share a job (saving, loading, signals, display check, TensorBoard, graphs,
argument types), the code that does it is the same text in every chapter that has it.

Data-driven: every function or class defined after the plumbing banner in any chapter script is collected, and
each name must have byte-identical source in every script that defines it there. Adding a function to one
chapter's block is fine; changing it in one chapter only is not. Chapter folders stay standalone, so these
identical copies are deliberate.
"""
import ast
from collections import defaultdict

import pytest
from conftest import ROOT

BANNER = "# ---- plumbing: the same text in every chapter that has it (tests/test_plumbing.py checks); safe to skip ----"
CHAPTER_SCRIPTS = sorted(p for folder in ("1-grid-world", "2-cartpole", "3-atari") for p in (ROOT / folder).glob("*/*.py")
                         if p.name not in ("environment.py",))


def plumbing_definitions(path):
    """{name: source} of the top-level functions and classes below the banner of one script."""
    text = path.read_text(encoding="utf-8")
    if BANNER not in text:
        return {}
    lines = text.splitlines()
    first = lines.index(BANNER) + 1                         # the block: from the banner to the next heading
    last = next((i for i in range(first, len(lines)) if lines[i].startswith("# ---- ")), len(lines))
    tree = ast.parse(text)
    return {node.name: ast.get_source_segment(text, node) for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and first < node.lineno <= last}


def collected():
    sources = defaultdict(dict)                    # name -> {script: source}
    for path in CHAPTER_SCRIPTS:
        for name, source in plumbing_definitions(path).items():
            sources[name][path.relative_to(ROOT).as_posix()] = source
    return sources


SHARED = {name: scripts for name, scripts in collected().items() if len(scripts) > 1}


def test_the_block_exists_in_every_training_script():
    training = [p for p in CHAPTER_SCRIPTS if not p.name.startswith("play_") and p.name not in ("turns.py",)]
    missing = [p.relative_to(ROOT).as_posix() for p in training if BANNER not in p.read_text(encoding="utf-8")]
    assert not missing, f"no plumbing block in {missing}"
    for name in ("atomic_write", "StopFlag", "positive_int"):
        assert len(SHARED.get(name, {})) >= 5, f"{name} is shared by too few chapters"


@pytest.mark.parametrize("name", sorted(SHARED))
def test_each_shared_piece_is_the_same_text_everywhere(name):
    scripts = SHARED[name]
    reference_script, reference = next(iter(scripts.items()))
    different = [script for script, source in scripts.items() if source != reference]
    assert not different, f"{name} in {different} differs from {reference_script}"


def test_no_script_raises_keyboard_interrupt_from_a_signal_handler():
    for path in CHAPTER_SCRIPTS:
        text = path.read_text(encoding="utf-8")
        assert "raise KeyboardInterrupt" not in text, path
