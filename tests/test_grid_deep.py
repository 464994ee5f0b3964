"""Tests of the moving-obstacle grid world chapters: 6-deep-sarsa and 7-reinforce."""
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, load_module, run_script

DEEP_SARSA = "1-grid-world/6-deep-sarsa/deep_sarsa_agent.py"
REINFORCE = "1-grid-world/7-reinforce/reinforce_agent.py"
SHIPPED = {DEEP_SARSA: ROOT / "1-grid-world/6-deep-sarsa/save_model/deep_sarsa_trained.weights.h5",
           REINFORCE: ROOT / "1-grid-world/7-reinforce/save_model/reinforce_trained.weights.h5"}
NAMES = {DEEP_SARSA: "deep_sarsa", REINFORCE: "reinforce"}
UP, DOWN, RIGHT, LEFT, STAY = range(5)


@pytest.fixture(scope="module")
def sarsa():
    return load_module(DEEP_SARSA)


@pytest.fixture(scope="module")
def reinforce():
    return load_module(REINFORCE)


def obstacle_xs(env):
    return [x for x, _, _ in env.obstacles]


# ---- the environment ----

def test_the_two_environment_files_differ_only_in_title_and_step_reward():
    deep = (ROOT / "1-grid-world/6-deep-sarsa/environment.py").read_text().splitlines()
    policy = (ROOT / "1-grid-world/7-reinforce/environment.py").read_text().splitlines()
    assert len(deep) == len(policy)
    differing = [(a, b) for a, b in zip(deep, policy) if a != b]
    assert [a.split("=")[0].strip() for a, _ in differing] == ["TITLE", "STEP_REWARD"]
    assert [b.split("#")[0].strip() for _, b in differing] == ['TITLE = "REINFORCE"', "STEP_REWARD = -0.1"]


def test_state_layout_after_reset(sarsa):
    env = sarsa.Env()
    state = env.reset()
    assert state.dtype == np.float32 and state.shape == (15,)
    # per obstacle [dx, dy, -1, direction (-1: moving right)], then the goal [dx, dy, +1]
    assert state.tolist() == [0, 1, -1, -1,  1, 2, -1, -1,  2, 3, -1, -1,  4, 4, 1]
    env.step(RIGHT)                  # step 1: obstacles move right first, then the agent to (1, 0)
    assert env.get_state().tolist() == [0, 1, -1, -1,  1, 2, -1, -1,  2, 3, -1, -1,  3, 4, 1]


def test_obstacles_move_every_other_step_and_bounce(sarsa):
    env = sarsa.Env()
    env.reset()
    seen = []
    for _ in range(16):
        env.step(STAY)
        seen.append(obstacle_xs(env))
    assert seen[0::2] == [[1, 2, 3], [2, 3, 4], [3, 4, 3], [4, 3, 2],
                          [3, 2, 1], [2, 1, 0], [1, 0, 1], [0, 1, 2]]
    assert seen[1::2] == seen[0::2]                  # even steps: nobody moves
    assert [y for _, y, _ in env.obstacles] == [1, 2, 3]
    # The direction in the state turns when the obstacle leaves the edge (the book's timing).
    env.reset()
    directions = []
    for _ in range(8):
        env.step(STAY)
        directions.append(env.get_state()[[3, 7, 11]].tolist())
    assert directions[4] == [-1, -1, 1]              # step 5: obstacle 3 left column 4, now moving left
    assert directions[6] == [-1, 1, 1]               # step 7: obstacle 2 too; obstacle 1 is at column 4
    assert env.get_state()[[0, 4, 8]].tolist() == [4, 3, 2]


def test_agent_moves_and_stays_inside_the_grid(sarsa):
    env = sarsa.Env()
    env.reset()
    for action, expected in [(UP, [0, 0]), (LEFT, [0, 0]), (RIGHT, [1, 0]), (STAY, [1, 0]),
                             (DOWN, [1, 1]), (LEFT, [0, 1])]:
        env.step(action)
        assert env.agent == expected


def test_rewards_and_done(sarsa, reinforce):
    # right x4 then down x4: the second obstacle is at (4, 2) when the agent passes (step 6).
    for module, step_reward in [(sarsa, 0.0), (reinforce, -0.1)]:
        env = module.Env()
        env.reset()
        results = [env.step(action)[1:] for action in [RIGHT] * 4 + [DOWN] * 4]
        rewards, dones = zip(*results)
        expected = [0, 0, 0, 0, 0, -1, 0, 1]
        assert rewards == pytest.approx([r + step_reward for r in expected])
        assert dones == (False,) * 7 + (True,)
        assert env.agent == [4, 4] and not env.truncated
    # down x4 then right x4 meets no obstacle: score 1
    env = sarsa.Env()
    env.reset()
    assert [env.step(a)[1] for a in [DOWN] * 4 + [RIGHT] * 4] == [0] * 7 + [1]
    # a collision costs -1 and the episode goes on
    env.reset()
    env.step(RIGHT)                                  # step 1: obstacle 1 moves to (1, 1)
    _, reward, done = env.step(DOWN)                 # step 2: the agent enters (1, 1)
    assert (reward, done) == (-1, False)


def test_step_cap_is_truncation_and_reset_restarts_the_clock(sarsa):
    env = sarsa.Env(max_steps=5)
    env.reset()
    for step in range(1, 6):
        assert not env.truncated
        _, _, done = env.step(STAY)
        assert not done and env.counter == step
    assert env.truncated
    env.reset()                                      # the Decision: counter and obstacles start over
    assert env.counter == 0 and not env.truncated
    assert obstacle_xs(env) == [0, 1, 2]
    env.step(STAY)
    assert obstacle_xs(env) == [1, 2, 3]             # step 1 of every episode moves them
    assert sarsa.Env().max_steps == sarsa.MAX_STEPS


# ---- Deep SARSA ----

def test_sarsa_target_by_hand(sarsa):
    assert sarsa.sarsa_target(-1.0, 2.0, 0.0, 0.99) == pytest.approx(0.98)
    assert sarsa.sarsa_target(1.0, 5.0, 1.0, 0.99) == pytest.approx(1.0)   # the goal: r alone
    assert sarsa.sarsa_target(0.0, -3.0, 0.0, 0.5) == pytest.approx(-1.5)


def test_numpy_q_values_match_the_network(sarsa):
    agent = sarsa.DeepSARSAgent(15, 5)
    state = sarsa.Env().reset()
    assert agent.q_values(state) == pytest.approx(np.array(agent.model(state[None]))[0], abs=1e-5)


def test_training_step_uses_the_next_action_taken_and_reduces_the_error(sarsa):
    import keras
    keras.utils.set_random_seed(3)
    agent = sarsa.DeepSARSAgent(15, 5)
    env = sarsa.Env()
    state = env.reset()
    next_state, _, _ = env.step(RIGHT)
    q, next_q = agent.q_values(state), agent.q_values(next_state)
    next_action = int(np.argmin(next_q))             # not the greedy one: the target must use a' itself
    y = -1.0 + 0.99 * next_q[next_action]
    loss = agent.train_model(state, RIGHT, -1.0, next_state, next_action, False)
    assert loss == pytest.approx((y - q[RIGHT]) ** 2 / 5, rel=1e-4)    # the book's MSE over 5 outputs
    assert agent.epsilon == pytest.approx(0.9999)
    # a large error (the goal, r = 1): one step moves Q(s, a) toward the target, the others barely move
    before = agent.q_values(state)
    agent.train_model(state, DOWN, 1.0, next_state, 0, True)
    after = agent.q_values(state)
    assert abs(1.0 - after[DOWN]) < abs(1.0 - before[DOWN])


def test_epsilon_decays_to_its_floor(sarsa):
    agent = sarsa.DeepSARSAgent(15, 5, epsilon=0.010002)
    state = np.zeros(15, np.float32)
    for _ in range(3):
        agent.train_model(state, 0, 0.0, state, 0, False)
    assert agent.epsilon == 0.01
    agent.epsilon = 0.0
    assert {agent.get_action(state) for _ in range(20)} == {int(np.argmax(agent.q_values(state)))}


# ---- REINFORCE ----

def test_returns_and_normalisation_by_hand(reinforce):
    agent = reinforce.ReinforceAgent(15, 5)
    returns = agent.discount_rewards([-0.1, -1.1, 0.9])
    assert returns == pytest.approx([-0.30691, -0.209, 0.9], abs=1e-6)
    assert reinforce.normalize_returns(returns) == pytest.approx([-0.79466, -0.61577, 1.41044], abs=1e-4)
    flat = reinforce.normalize_returns([2.0, 2.0, 2.0])          # epsilon: zeros, not NaN
    assert np.all(flat == 0)


def test_policy_matches_the_network_and_sums_to_one(reinforce):
    agent = reinforce.ReinforceAgent(15, 5)
    state = reinforce.Env().reset()
    policy = agent.policy(state)
    assert policy.sum() == pytest.approx(1.0)
    assert policy == pytest.approx(np.array(agent.model(state[None]))[0], abs=1e-5)


def test_one_policy_gradient_step_lowers_the_episode_loss(reinforce):
    import keras
    keras.utils.set_random_seed(5)
    np.random.seed(5)
    agent = reinforce.ReinforceAgent(15, 5)
    env = reinforce.Env()
    state, done = env.reset(), False
    for action in [DOWN] * 4 + [RIGHT] * 4:          # the shortest route: -0.1 x 7, then +0.9
        next_state, reward, done = env.step(action)
        agent.append_sample(state, action, reward)
        state = next_state
    states, actions = np.array(agent.states), list(agent.actions)
    weights = reinforce.normalize_returns(agent.discount_rewards(agent.rewards))

    def episode_loss():
        chosen = np.array([agent.policy(s)[a] for s, a in zip(states, actions)])
        return -np.sum(np.log(chosen) * weights)

    before = episode_loss()
    loss = agent.train_model()
    assert loss == pytest.approx(before, abs=1e-4)
    assert episode_loss() < before
    assert agent.states == agent.actions == agent.rewards == []   # the episode is forgotten


# ---- the scripts ----

def finished_lines(output):
    return re.findall(r"^episode: \d+ \| .*$", output, re.MULTILINE)


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_smoke_train_save_and_reload(script, tmp_path, capsys):
    name = NAMES[script]
    result = run_script(script, "--episodes", 3, "--seed", 0, "--max-steps", 60, "--save-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no display found: running headless" in result.stdout
    lines = finished_lines(result.stdout)
    assert len(lines) == 3 and all("steps:" in line for line in lines)
    assert ("epsilon:" in lines[0]) == (script == DEEP_SARSA)
    weights = tmp_path / "save_model" / f"{name}.weights.h5"
    assert weights.is_file() and (tmp_path / "save_graph" / f"{name}.png").is_file()
    assert list((tmp_path / "summary" / name).glob("events.out.tfevents.*"))
    assert not list(tmp_path.rglob(".tmp-*"))
    # --load (in this process, to spare a TensorFlow start-up): training goes on from the saved weights,
    # Deep SARSA then starting at epsilon 0.05; and --play --load plays them.
    module = load_module(script)
    module.main(["--load", str(weights), "--episodes", "1", "--max-steps", "60", "--save-dir", str(tmp_path),
                 "--no-render"])
    line = finished_lines(capsys.readouterr().out)[0]
    if script == DEEP_SARSA:
        assert 0.049 < float(re.search(r"epsilon: ([\d.]+)", line).group(1)) <= 0.05
    module.main(["--play", "--load", str(weights), "--episodes", "2", "--max-steps", "60", "--no-render"])
    assert re.search(r"^goal reached: [0-2] of 2$", capsys.readouterr().out, re.MULTILINE)


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_play_shipped_weights_reaches_the_goal(script):
    result = run_script(script, "--play", "--no-render", "--episodes", 20)
    assert result.returncode == 0, result.stderr
    reached = int(re.search(r"^goal reached: (\d+) of 20$", result.stdout, re.MULTILINE).group(1))
    assert reached >= 18
    assert re.search(r"^mean score: -?[\d.]+ over 20 episodes$", result.stdout, re.MULTILINE)
    assert len(finished_lines(result.stdout)) == 20


def test_bad_weights_file_gives_one_line_and_exit_1(tmp_path):
    path = tmp_path / "nothing.weights.h5"
    result = run_script(DEEP_SARSA, "--play", "--no-render", "--load", path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot load weights from {path} (")


def truncated_copy(path, tmp_path):
    copy = tmp_path / "truncated.weights.h5"
    data = path.read_bytes()
    copy.write_bytes(data[: len(data) // 2])
    return copy


# The same check in this process (sys.exit's message is what the script prints), for every kind of bad file.
@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
@pytest.mark.parametrize("case", ["missing", "truncated", "wrong shape"])
def test_bad_weights_every_kind(script, case, tmp_path):
    other = REINFORCE if script == DEEP_SARSA else DEEP_SARSA
    path = {"missing": lambda: tmp_path / "nothing.weights.h5",
            "truncated": lambda: truncated_copy(SHIPPED[script], tmp_path),
            "wrong shape": lambda: SHIPPED[other]}[case]()       # the other chapter's network: 30 vs 24 units
    for mode in (["--play"], ["--episodes", "1", "--save-dir", str(tmp_path)]):
        with pytest.raises(SystemExit) as exit_info:
            load_module(script).main([*mode, "--no-render", "--load", str(path)])
        message = exit_info.value.code
        assert isinstance(message, str) and "\n" not in message      # sys.exit(str): one line, exit 1
        assert message.startswith(f"error: cannot load weights from {path} (")
    assert not (tmp_path / "save_model" / f"{NAMES[script]}.weights.h5").exists()


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_help_documents_the_hyperparameters(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_module(script).parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ["--episodes", "--seed", "--render", "--save-dir", "--load", "--play", "--max-steps",
                 "--learning-rate", "--discount-factor"]:
        assert flag in text
    assert "0.99" in text and "0.001" in text


def test_bad_arguments_exit_2(capsys):
    result = run_script(DEEP_SARSA, "--no-such-flag")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr
    for script in (DEEP_SARSA, REINFORCE):
        for bad in (["--episodes", "0"], ["--discount-factor", "1.5"], ["--render-delay", "-1"]):
            with pytest.raises(SystemExit) as exit_info:
                load_module(script).parse_args(bad)
            assert exit_info.value.code == 2


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_unwritable_save_dir_fails_before_training(script, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        load_module(script).main(["--no-render", "--save-dir", str(blocker)])
    assert exit_info.value.code.startswith("error: cannot write to")
    assert "episode:" not in capsys.readouterr().out


def test_ctrl_c_saves_and_exits_130(tmp_path):
    child_env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    child_env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen([sys.executable, str(ROOT / DEEP_SARSA), "--no-render", "--seed", "0",
                                "--episodes", "100000", "--save-dir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=child_env)
    try:
        for line in process.stdout:                  # wait until training is really running
            if line.startswith("episode: 2 "):
                break
        process.send_signal(signal.SIGINT)
        rest = process.stdout.read()
        assert process.wait(timeout=60) == 130
    finally:
        process.kill()
    assert "interrupted: weights saved to" in rest
    assert (tmp_path / "save_model" / "deep_sarsa.weights.h5").is_file()
    assert (tmp_path / "save_graph" / "deep_sarsa.png").is_file()


# ---- the window (a real Tk under Xvfb) ----

def test_rendered_episode_draws_the_dynamics(sarsa, tk_display):
    env = sarsa.Env(render=True, delay=0)
    try:
        assert env.window.title() == "DeepSARSA"
        canvas = env.canvas
        assert (int(canvas["width"]), int(canvas["height"])) == (250, 250)

        def centre(item):
            coords = canvas.coords(item)
            xs, ys = coords[0::2], coords[1::2]
            return round((min(xs) + max(xs)) / 2 / 50 - 0.5), round((min(ys) + max(ys)) / 2 / 50 - 0.5)

        env.reset()
        for action in [DOWN] * 4 + [RIGHT] * 4:
            _, _, done = env.step(action)
            assert list(centre(env.agent_sprite)) == env.agent
            assert [list(centre(item)) for item in env.obstacle_sprites] == [[x, y] for x, y, _ in env.obstacles]
        assert done
        assert list(centre(canvas.find_withtag("circle")[0])) == [4, 4]
        assert len(canvas.find_withtag("triangle")) == 3
    finally:
        env.close()
    assert not env.rendering
    env.step(STAY)                                   # after closing, the world goes on headless


def test_play_with_a_window(tk_display):
    result = run_script(REINFORCE, "--play", "--render", "--render-delay", 0, "--episodes", 1,
                        display=tk_display)
    assert result.returncode == 0, result.stderr
    assert "no display" not in result.stdout
    assert "goal reached: 1 of 1" in result.stdout
