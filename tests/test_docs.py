"""The documentation says what the code does: every command in a markdown file runs an existing script with
options it has, every picture and page it links exists, every chapter has its page, and --record writes an
animated GIF on every way of watching an agent."""
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import pytest
from conftest import ROOT, load_module, run_script

MARKDOWN = sorted(p for p in ROOT.rglob("*.md") if not any(part.startswith(".") for part in p.relative_to(ROOT).parts))
CHAPTERS = sorted(chapter for group in ("1-grid-world", "2-cartpole", "3-atari") for chapter in (ROOT / group).glob("[0-9]-*")
                  if chapter.is_dir())
COMMAND = re.compile(r"\bpython3? +((?:[\w.-]+/)*[\w.-]+\.py)((?:[ \t]+[^\s`|;&)]+)*)")
LINK = re.compile(r"(!?)\[[^\]]*\]\(([^)\s]+)\)")


def commands():
    """(markdown file, script path, subcommand or None, options) of every `python something.py ...` in the markdown
    files. A plain word right after the script is taken for a subcommand (`precision_learning.py train ...`)."""
    found = []
    for page in MARKDOWN:
        for match in COMMAND.finditer(page.read_text(encoding="utf-8")):
            script, rest = match.groups()
            words = rest.split()
            subcommand = words[0] if words and re.fullmatch(r"[a-z]+", words[0]) else None
            options = [word.split("=")[0] for word in words if word.startswith("--")]
            found.append((page, script, subcommand, options))
    return found


def resolve(page, script):
    """A command's script: written from the repository's top folder, or (inside a chapter page) from its folder."""
    for base in (ROOT, page.parent):
        if (base / script).is_file():
            return (base / script).resolve()
    return None


@lru_cache(maxsize=None)
def help_text(script, subcommand=None):
    result = subprocess.run([sys.executable, str(script), *([subcommand] if subcommand else []), "--help"],
                            capture_output=True, text=True, timeout=300, cwd=script.parent)
    assert result.returncode == 0, f"{script} {subcommand or ''} --help failed: {result.stderr[-500:]}"
    return result.stdout


def test_every_markdown_command_names_a_script_and_only_options_it_has():
    found = commands()
    assert len(found) > 40                                       # the pages do show commands
    missing = [f"{page.relative_to(ROOT)}: {script}" for page, script, _, _ in found if resolve(page, script) is None]
    assert not missing, f"commands naming no script: {missing}"
    top = sorted({resolve(page, script) for page, script, _, _ in found})
    with ThreadPoolExecutor(max_workers=2) as pool:              # each --help starts Python (and TensorFlow)
        helps = {(script, None): text for script, text in zip(top, pool.map(help_text, top))}

    def help_of(page, script, subcommand):
        script = resolve(page, script)
        if subcommand and re.search(rf"[{{,]{subcommand}[,}}]", helps[script, None]):   # argparse's {train,report}
            return helps.setdefault((script, subcommand), help_text(script, subcommand))
        return helps[script, None]
    unknown = [f"{page.relative_to(ROOT)}: python {script} {option}" for page, script, subcommand, options in found
               for option in options if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])",
                                                      help_of(page, script, subcommand))]
    assert not unknown, f"options the script's --help does not list: {unknown}"


def github_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page):
    return {github_anchor(line.lstrip("#")) for line in page.read_text(encoding="utf-8").splitlines()
            if line.startswith("#")}


def test_every_picture_and_page_a_markdown_file_links_exists():
    broken, pictures = [], 0
    for page in MARKDOWN:
        for is_image, target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):                    # http(s), mailto: not checked here
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            pictures += bool(is_image)
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.relative_to(ROOT)} -> {target} (no such heading)")
    assert not broken, f"broken links: {broken}"
    assert pictures >= 20


def test_every_chapter_has_its_page_in_korean_with_an_english_summary_and_its_differences():
    for chapter in CHAPTERS:
        page = chapter / "README.md"
        assert page.is_file(), f"{chapter.relative_to(ROOT)} has no README.md"
        text = page.read_text(encoding="utf-8")
        assert re.search(r"[\uac00-\ud7a3]", text), f"{page} has no Korean"
        assert "## English summary" in text and "## 책의 코드와 다른 점" in text, page
        assert re.search(r"!\[[^\]]*\]\(media/", text), f"{page} shows no picture of its own"
    top = (ROOT / "README.md").read_text(encoding="utf-8")
    for chapter in CHAPTERS:
        assert f"({chapter.relative_to(ROOT).as_posix()}/README.md)" in top, f"README.md does not link {chapter}"
    english = (ROOT / "README.en.md").read_text(encoding="utf-8")
    assert "(README.en.md)" in top and "(README.md)" in english
    top_sections = [line for line in top.splitlines() if line.startswith("## ")]
    english_sections = [line for line in english.splitlines() if line.startswith("## ")]
    assert len(top_sections) == len(english_sections), "README.md and README.en.md have different sections"


def test_the_shipped_pictures_are_small_animated_gifs():
    from PIL import Image
    gifs = sorted(ROOT.glob("*/*/media/*.gif"))
    assert len(gifs) >= 11
    for gif in gifs:
        assert gif.stat().st_size <= 2_000_000, gif
        with Image.open(gif) as image:
            assert image.format == "GIF" and image.is_animated and image.n_frames >= 10, gif


def assert_animated_gif(path, frames=10):
    from PIL import Image
    with Image.open(path) as image:
        assert image.format == "GIF" and image.is_animated and image.n_frames >= frames
        return image.size


# Every way of watching an agent, headless (no DISPLAY), with --record.
RECORDS = [
    ("1-grid-world/1-policy-iteration/policy_iteration.py", ["--no-render"]),
    ("1-grid-world/2-value-iteration/value_iteration.py", ["--no-render"]),
    ("1-grid-world/3-monte-carlo/mc_agent.py", ["--no-render", "--episodes", "50", "--save-dir", "{tmp}"]),
    ("1-grid-world/4-sarsa/sarsa_agent.py", ["--no-render", "--episodes", "50", "--save-dir", "{tmp}"]),
    ("1-grid-world/5-q-learning/q_learning_agent.py", ["--no-render", "--episodes", "50", "--save-dir", "{tmp}"]),
    ("1-grid-world/6-deep-sarsa/deep_sarsa_agent.py", ["--play", "--episodes", "1"]),
    ("1-grid-world/7-reinforce/reinforce_agent.py", ["--play", "--episodes", "1"]),
    ("2-cartpole/1-dqn/cartpole_dqn.py", ["--play", "--episodes", "1"]),
    ("2-cartpole/2-actor-critic/cartpole_a2c.py", ["--play", "--episodes", "1", "--render"]),
    ("3-atari/1-breakout-dqn/play_dqn_model.py", ["--episodes", "1", "--max-episode-steps", "40"]),
    ("3-atari/2-breakout-a3c/play_a3c_model.py", ["--episodes", "1", "--max-episode-steps", "40"]),
]


@pytest.mark.parametrize("script, options", RECORDS, ids=[Path(s).stem for s, _ in RECORDS])
def test_record_writes_an_animated_gif_headless(script, options, tmp_path):
    target = tmp_path / "new folder" / "watch.gif"
    result = run_script(script, *[o.format(tmp=tmp_path) for o in options], "--seed", 0, "--record", target,
                        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"to {target}" in result.stdout.splitlines()[-1] or any(
        line.startswith("recorded ") and str(target) in line for line in result.stdout.splitlines())
    assert_animated_gif(target)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".tmp-")]     # written atomically


@pytest.mark.parametrize("script", ["3-atari/1-breakout-dqn/breakout_dqn.py", "3-atari/2-breakout-a3c/breakout_a3c.py"])
def test_the_atari_training_scripts_record_what_play_plays(script, tmp_path, monkeypatch):
    chapter = load_module(script)
    seen = {}
    monkeypatch.setattr(chapter, "play_main", lambda *args, **kwargs: seen.update(args=args, kwargs=kwargs))
    chapter.main(["--play", "--episodes", "1", "--record", str(tmp_path / "a.gif")])
    assert tmp_path / "a.gif" in list(seen["args"]) + list(seen["kwargs"].values())


@pytest.mark.parametrize("script", [s for s, options in RECORDS if "--play" in options] +
                         ["3-atari/1-breakout-dqn/breakout_dqn.py", "3-atari/2-breakout-a3c/breakout_a3c.py"])
def test_record_is_refused_in_one_line_without_play_or_gif(script, tmp_path, capsys):
    parse_args = load_module(script).parse_args
    for argv, reason in (([f"--record={tmp_path / 'a.gif'}"], "add --play"),
                         (["--play", f"--record={tmp_path / 'a.png'}"], "ending in .gif")):
        with pytest.raises(SystemExit) as refused:
            parse_args(argv)
        assert refused.value.code == 2 and reason in capsys.readouterr().err.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())


def test_the_grid_picture_draws_the_world_from_cells():
    sarsa = load_module("1-grid-world/4-sarsa/environment.py")
    image = sarsa.grid_picture([0, 0], [2, 2], [[2, 1], [1, 2]])
    unit = 60
    assert image.size == (5 * unit + 1, 5 * unit + 1)
    centre = lambda x, y: (x * unit + unit // 2, y * unit + unit // 2)          # noqa: E731
    assert image.getpixel(centre(0, 0)) == (0xe7, 0x4c, 0x3c)                      # the agent, red
    assert image.getpixel(centre(2, 2)) == (0xf0, 0xc4, 0x19)                      # the goal, yellow
    assert image.getpixel((2 * unit + unit // 2, 1 * unit + 2 * unit // 3)) == (0x3c, 0x8d, 0xbc)   # a triangle
    assert image.getpixel(centre(4, 4)) == (255, 255, 255)
    frames = sarsa.grid_animation([[0, 0], [1, 0]], [2, 2], [[[2, 1]]] * 2, per_move=4)
    assert len(frames) == 4 + 8                                                   # the slide, then a rest
    assert frames[2].getpixel((unit, unit // 2)) == (0xe7, 0x4c, 0x3c)            # half-way between the cells
