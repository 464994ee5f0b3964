"""Make the pictures of the READMEs: screenshots of the grid-world windows and GIFs of every agent.

    python docs/make_media.py                  # everything (about 2 minutes on a 2-core CPU)
    python docs/make_media.py --only gifs      # or: --only screenshots

GIFs: each chapter's own command with `--record` (what a reader would type), written to <chapter>/media/:
the greedy path of the DP and tabular chapters, and one game of every shipped agent (Deep SARSA, REINFORCE,
CartPole DQN and A2C, Breakout DQN and A3C).
Screenshots: the real Tk windows, opened on a virtual screen (Xvfb, started here) by the chapters' own
classes, driven as a reader would drive them (policy iteration: Evaluate ×3 and Improve; value iteration:
Calculate ×5 and Print Policy; Monte Carlo, SARSA, Q-learning: 300 training episodes; Deep SARSA and
REINFORCE: a few steps of the shipped agent), then grabbed from the screen with Pillow. Needs Xvfb
(`apt-get install -y xvfb`); a reader's own screen is never used.
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from chapters import load_module  # noqa: E402  (tests/chapters.py: a chapter file by its path)

SEED = 1
GIF_COMMANDS = [   # (script, options, GIF in the chapter's media/ folder)
    ("1-grid-world/1-policy-iteration/policy_iteration.py", ["--no-render"], "greedy_path.gif"),
    ("1-grid-world/2-value-iteration/value_iteration.py", ["--no-render"], "greedy_path.gif"),
    ("1-grid-world/3-monte-carlo/mc_agent.py", ["--no-render", "--save-dir", "{tmp}"], "greedy_path.gif"),
    ("1-grid-world/4-sarsa/sarsa_agent.py", ["--no-render", "--save-dir", "{tmp}"], "greedy_path.gif"),
    ("1-grid-world/5-q-learning/q_learning_agent.py", ["--no-render", "--save-dir", "{tmp}"], "greedy_path.gif"),
    ("1-grid-world/6-deep-sarsa/deep_sarsa_agent.py", ["--play", "--episodes", "1", "--no-render"],
     "deep_sarsa_trained.gif"),
    ("1-grid-world/7-reinforce/reinforce_agent.py", ["--play", "--episodes", "1", "--no-render"],
     "reinforce_trained.gif"),
    ("2-cartpole/1-dqn/cartpole_dqn.py", ["--play", "--episodes", "1"], "cartpole_dqn_trained.gif"),
    ("2-cartpole/2-actor-critic/cartpole_a2c.py", ["--play", "--episodes", "1"], "cartpole_a2c_trained.gif"),
    ("3-atari/1-breakout-dqn/play_dqn_model.py", ["--episodes", "1"], "breakout_dqn_trained.gif"),
    ("3-atari/2-breakout-a3c/play_a3c_model.py", ["--episodes", "1"], "breakout_a3c_trained.gif"),
]


def make_gifs(tmp):
    for script, options, name in GIF_COMMANDS:
        target = ROOT / Path(script).parent / "media" / name
        command = [sys.executable, str(ROOT / script), *[o.format(tmp=tmp) for o in options],
                   "--seed", str(SEED), "--record", str(target)]
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DISPLAY": ""})
        last = [line for line in result.stdout.splitlines() if line.startswith(("recorded", "mean", "greedy"))]
        print(f"{script}: exit {result.returncode}; " + "; ".join(last), flush=True)
        if result.returncode != 0:
            sys.exit(result.stderr[-2000:])


def start_xvfb():
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        sys.exit("error: Xvfb is not installed (apt-get install -y xvfb)")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24", "-nolisten",
                               "tcp"], pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    os.environ["DISPLAY"] = f":{number}"
    return server


def grab(window, path):
    """Save what the screen shows where this Tk window is (the window itself, drawn by X)."""
    from PIL import ImageGrab
    window.update()
    window.after(200, window.quit)
    window.mainloop()                                   # let X draw everything
    x, y = window.winfo_rootx(), window.winfo_rooty()
    box = (x, y, x + window.winfo_width(), y + window.winfo_height())
    path.parent.mkdir(exist_ok=True)
    ImageGrab.grab(bbox=box, xdisplay=os.environ["DISPLAY"]).save(path)
    print(f"{path.relative_to(ROOT)}: {box[2] - box[0]}x{box[3] - box[1]}", flush=True)


def screenshot_dp(folder, script, clicks):
    chapter = load_module(f"{folder}/{script}")
    agent = chapter.PolicyIteration(chapter.Env()) if hasattr(chapter, "PolicyIteration") else \
        chapter.ValueIteration(chapter.Env())
    window = load_module(f"{folder}/environment.py").GraphicDisplay(agent)
    for button in clicks:
        window.buttons[button].invoke()
    grab(window, ROOT / folder / "media" / "window.png")
    window.destroy()


def screenshot_tabular(folder, script, agent_class):
    chapter = load_module(f"{folder}/{script}")
    random.seed(SEED)
    chapter.np.random.seed(SEED)
    env = chapter.make_env(True, 0.0)
    agent = getattr(chapter, agent_class)(actions=list(range(env.n_actions)))
    chapter.train(env, agent, 300, quiet=True)
    agent.epsilon = 0.0                                  # show the agent a few steps into a greedy walk
    state = env.reset()
    for _ in range(3):
        state, _, done = env.step(agent.get_action(state))
        if done:
            break
    env.print_value_all(agent.q_table if hasattr(agent, "q_table") else agent.value_table)
    grab(env.window, ROOT / folder / "media" / "window.png")
    env.close()


def screenshot_deep(folder, script, agent_class):
    chapter = load_module(f"{folder}/{script}")
    env = chapter.make_env(True, 0.0, chapter.MAX_STEPS)
    agent = getattr(chapter, agent_class)(chapter.STATE_SIZE, len(chapter.ACTIONS))
    agent.model.load_weights(chapter.TRAINED)
    agent.refresh_weights()
    agent.epsilon = 0.0
    state = env.reset()
    for _ in range(4):
        action = agent.get_action(state) if agent_class == "DeepSARSAgent" else \
            int(chapter.np.argmax(agent.policy(state)))
        state, _, _ = env.step(action)
    grab(env.window, ROOT / folder / "media" / "window.png")
    env.close()


def make_screenshots():
    server = start_xvfb()
    try:
        screenshot_dp("1-grid-world/1-policy-iteration", "policy_iteration.py",
                      ["Evaluate", "Evaluate", "Evaluate", "Improve"])
        screenshot_dp("1-grid-world/2-value-iteration", "value_iteration.py", ["Calculate"] * 5 + ["Print Policy"])
        screenshot_tabular("1-grid-world/3-monte-carlo", "mc_agent.py", "MCAgent")
        screenshot_tabular("1-grid-world/4-sarsa", "sarsa_agent.py", "SARSAgent")
        screenshot_tabular("1-grid-world/5-q-learning", "q_learning_agent.py", "QLearningAgent")
        screenshot_deep("1-grid-world/6-deep-sarsa", "deep_sarsa_agent.py", "DeepSARSAgent")
        screenshot_deep("1-grid-world/7-reinforce", "reinforce_agent.py", "ReinforceAgent")
    finally:
        server.terminate()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("gifs", "screenshots"), default=None)
    args = parser.parse_args()
    import tempfile
    if args.only != "screenshots":
        with tempfile.TemporaryDirectory() as tmp:
            make_gifs(tmp)
    if args.only != "gifs":
        make_screenshots()


if __name__ == "__main__":
    main()
