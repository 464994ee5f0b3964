"""Tests of the moving-obstacle grid world chapters: 6-deep-sarsa and 7-reinforce."""
import re
import signal

import numpy as np
import pytest

from conftest import ROOT, chapter_files, interrupt_script, load_module, printed_mean, printed_scores, run_script, truncate_file

DEEP_SARSA = "1-grid-world/6-deep-sarsa/deep_sarsa_agent.py"
REINFORCE = "1-grid-world/7-reinforce/reinforce_agent.py"
WORLDS = {DEEP_SARSA: "1-grid-world/6-deep-sarsa/environment.py",      # the world, make_env, the --record drawing
          REINFORCE: "1-grid-world/7-reinforce/environment.py"}
SHIPPED = {DEEP_SARSA: ROOT / "1-grid-world/6-deep-sarsa/save_model/deep_sarsa_trained.weights.h5",
           REINFORCE: ROOT / "1-grid-world/7-reinforce/save_model/reinforce_trained.weights.h5"}
NAMES = {DEEP_SARSA: "deep_sarsa", REINFORCE: "reinforce"}
LEARN_EPISODES = {DEEP_SARSA: 600, REINFORCE: 1000}      # training budgets of the learning tests (seed 0)
UP, DOWN, RIGHT, LEFT, STAY = range(5)


@pytest.fixture(scope="module")
def sarsa():
    return load_module(DEEP_SARSA)


@pytest.fixture(scope="module")
def reinforce():
    return load_module(REINFORCE)


@pytest.fixture(scope="module")
def sarsa_world():
    return load_module(WORLDS[DEEP_SARSA])


@pytest.fixture(scope="module")
def reinforce_world():
    return load_module(WORLDS[REINFORCE])


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


def test_the_two_artefacts_files_are_the_same():
    deep = (ROOT / "1-grid-world/6-deep-sarsa/artefacts.py").read_bytes()
    assert deep == (ROOT / "1-grid-world/7-reinforce/artefacts.py").read_bytes()


def test_state_layout_after_reset(sarsa_world):
    env = sarsa_world.Env()
    state = env.reset()
    assert state.dtype == np.float32 and state.shape == (15,)
    # per obstacle [dx, dy, -1, direction (-1: moving right)], then the goal [dx, dy, +1]
    assert state.tolist() == [0, 1, -1, -1,  1, 2, -1, -1,  2, 3, -1, -1,  4, 4, 1]
    env.step(RIGHT)                  # step 1: obstacles move right first, then the agent to (1, 0)
    assert env.get_state().tolist() == [0, 1, -1, -1,  1, 2, -1, -1,  2, 3, -1, -1,  3, 4, 1]


def test_obstacles_move_every_other_step_and_bounce(sarsa_world):
    env = sarsa_world.Env()
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


def test_agent_moves_and_stays_inside_the_grid(sarsa_world):
    env = sarsa_world.Env()
    env.reset()
    for action, expected in [(UP, [0, 0]), (LEFT, [0, 0]), (RIGHT, [1, 0]), (STAY, [1, 0]),
                             (DOWN, [1, 1]), (LEFT, [0, 1])]:
        env.step(action)
        assert env.agent == expected


def test_rewards_and_done(sarsa_world, reinforce_world):
    # right x4 then down x4: the second obstacle is at (4, 2) when the agent passes (step 6).
    for world, step_reward in [(sarsa_world, 0.0), (reinforce_world, -0.1)]:
        env = world.Env()
        env.reset()
        results = [env.step(action)[1:] for action in [RIGHT] * 4 + [DOWN] * 4]
        rewards, dones = zip(*results)
        expected = [0, 0, 0, 0, 0, -1, 0, 1]
        assert rewards == pytest.approx([r + step_reward for r in expected])
        assert dones == (False,) * 7 + (True,)
        assert env.agent == [4, 4] and not env.truncated
    # down x4 then right x4 meets no obstacle: score 1
    env = sarsa_world.Env()
    env.reset()
    assert [env.step(a)[1] for a in [DOWN] * 4 + [RIGHT] * 4] == [0] * 7 + [1]
    # a collision costs -1 and the episode goes on
    env.reset()
    env.step(RIGHT)                                  # step 1: obstacle 1 moves to (1, 1)
    _, reward, done = env.step(DOWN)                 # step 2: the agent enters (1, 1)
    assert (reward, done) == (-1, False)


def test_step_cap_is_truncation_and_reset_restarts_the_clock(sarsa, sarsa_world):
    env = sarsa_world.Env(max_steps=5)
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
    assert sarsa_world.Env().max_steps == sarsa_world.MAX_STEPS
    assert sarsa.parse_args([]).max_steps == sarsa_world.MAX_STEPS      # the script's --max-steps default


# ---- Deep SARSA ----

def test_sarsa_target_by_hand(sarsa):
    assert sarsa.sarsa_target(-1.0, 2.0, 0.0, 0.99) == pytest.approx(0.98)
    assert sarsa.sarsa_target(1.0, 5.0, 1.0, 0.99) == pytest.approx(1.0)   # the goal: r alone
    assert sarsa.sarsa_target(0.0, -3.0, 0.0, 0.5) == pytest.approx(-1.5)


def test_numpy_q_values_match_the_network(sarsa, sarsa_world):
    agent = sarsa.DeepSARSAgent(15, 5)
    state = sarsa_world.Env().reset()
    assert agent.q_values(state) == pytest.approx(np.array(agent.model(state[None]))[0], abs=1e-5)


def test_training_step_uses_the_next_action_taken_and_reduces_the_error(sarsa, sarsa_world):
    import keras
    keras.utils.set_random_seed(3)
    agent = sarsa.DeepSARSAgent(15, 5)
    env = sarsa_world.Env()
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


def test_policy_matches_the_network_and_sums_to_one(reinforce, reinforce_world):
    agent = reinforce.ReinforceAgent(15, 5)
    state = reinforce_world.Env().reset()
    policy = agent.policy(state)
    assert policy.sum() == pytest.approx(1.0)
    assert policy == pytest.approx(np.array(agent.model(state[None]))[0], abs=1e-5)


def test_one_policy_gradient_step_lowers_the_episode_loss(reinforce, reinforce_world):
    import keras
    keras.utils.set_random_seed(5)
    np.random.seed(5)
    agent = reinforce.ReinforceAgent(15, 5)
    env = reinforce_world.Env()
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

# main() installs the scripts' stop flag (SIGINT and SIGTERM handlers) in this process: put pytest's back.
pytestmark = pytest.mark.usefixtures("own_signal_handlers")


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_smoke_train_save_and_reload(script, tmp_path, capsys):
    name = NAMES[script]
    result = run_script(script, "--episodes", 3, "--seed", 0, "--max-steps", 60, "--save-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no display found: running headless" in result.stdout
    assert len(printed_scores(result.stdout)) == 3
    assert len(re.findall(r"^episode: \d+ \| score: -?[\d.]+ \| steps: \d+", result.stdout, re.M)) == 3
    assert ("| epsilon: " in result.stdout) == (script == DEEP_SARSA)
    weights = tmp_path / "save_model" / f"{name}.weights.h5"
    assert weights.is_file() and (tmp_path / "save_graph" / f"{name}.png").is_file()
    assert list((tmp_path / "summary" / name).glob("events.out.tfevents.*"))
    assert not list(tmp_path.rglob(".tmp-*"))
    # --load (in this process, to spare a TensorFlow start-up): training goes on from the saved weights,
    # Deep SARSA then starting at epsilon 0.05; and --play --load plays them.
    module = load_module(script)
    module.main(["--load", str(weights), "--episodes", "1", "--max-steps", "60", "--save-dir", str(tmp_path),
                 "--no-render"])
    out = capsys.readouterr().out
    assert len(printed_scores(out)) == 1
    if script == DEEP_SARSA:
        assert 0.049 < float(re.search(r"epsilon: ([\d.]+)", out).group(1)) <= 0.05
    module.main(["--play", "--load", str(weights), "--episodes", "2", "--max-steps", "60", "--no-render"])
    assert re.search(r"^goal reached: [0-2] of 2$", capsys.readouterr().out, re.MULTILINE)


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_play_shipped_weights_reaches_the_goal_and_writes_nothing(script):
    before = chapter_files(script)
    result = run_script(script, "--play", "--no-render", "--episodes", 20)
    assert result.returncode == 0, result.stderr
    reached = int(re.search(r"^goal reached: (\d+) of 20$", result.stdout, re.MULTILINE).group(1))
    assert reached >= 18
    assert len(printed_scores(result.stdout)) == 20
    assert printed_mean(result.stdout) == pytest.approx(np.mean(printed_scores(result.stdout)), abs=0.01)
    assert chapter_files(script) == before             # watching leaves the chapter folder as it was


def test_a_window_that_cannot_open_falls_back_to_headless(monkeypatch, capsys):
    monkeypatch.setenv("DISPLAY", ":4321")             # set, but no X server answers there
    load_module(REINFORCE).main(["--play", "--render", "--episodes", "1"])
    out = capsys.readouterr().out
    assert re.search(r"^cannot open the grid window \(.+\): running headless$", out, re.MULTILINE)
    assert "goal reached: 1 of 1" in out


def test_bad_weights_file_gives_one_line_and_exit_1(tmp_path):
    path = tmp_path / "nothing.weights.h5"
    result = run_script(DEEP_SARSA, "--play", "--no-render", "--load", path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot load weights from {path} (")


# The same check in this process (sys.exit's message is what the script prints), for every kind of bad file.
# A bad --load is found before any folder is made: the run leaves nothing behind.
@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
@pytest.mark.parametrize("case", ["missing", "truncated", "wrong shape"])
def test_bad_weights_every_kind(script, case, tmp_path):
    other = REINFORCE if script == DEEP_SARSA else DEEP_SARSA
    path = {"missing": lambda: tmp_path / "nothing.weights.h5",
            "truncated": lambda: truncate_file(SHIPPED[script], tmp_path / "truncated.weights.h5"),
            "wrong shape": lambda: SHIPPED[other]}[case]()       # the other chapter's network: 30 vs 24 units
    run_dir = tmp_path / "run"
    for mode in (["--play"], ["--episodes", "1", "--save-dir", str(run_dir)]):
        with pytest.raises(SystemExit) as exit_info:
            load_module(script).main([*mode, "--no-render", "--load", str(path)])
        message = exit_info.value.code
        assert isinstance(message, str) and "\n" not in message      # sys.exit(str): one line, exit 1
        assert message.startswith(f"error: cannot load weights from {path} (")
    assert not run_dir.exists()                                     # no save_model/, save_graph/, summary/


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_help_documents_the_hyperparameters(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_module(script).parse_args(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())                 # argparse wraps lines anywhere
    for flag in ["--episodes", "--seed", "--render", "--save-dir", "--load", "--play", "--max-steps",
                 "--learning-rate", "--discount-factor"]:
        assert flag in text
    assert "gamma (default: 0.99)" in text and "Adam step size (default: 0.001)" in text
    assert "(default " not in text                                   # each default shown once, by argparse


def test_bad_arguments_exit_2(capsys):
    result = run_script(DEEP_SARSA, "--no-such-flag")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr
    for script in (DEEP_SARSA, REINFORCE):
        for bad in (["--episodes", "0"], ["--discount-factor", "1.5"], ["--render-delay", "-1"],
                    ["--learning-rate", "nan"], ["--learning-rate", "inf"], ["--learning-rate", "0"],
                    ["--seed", "one"]):
            with pytest.raises(SystemExit) as exit_info:
                load_module(script).parse_args(bad)
            assert exit_info.value.code == 2
    assert "must be a positive, finite number, got nan" in capsys.readouterr().err


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_unwritable_save_dir_fails_before_training(script, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        load_module(script).main(["--no-render", "--save-dir", str(blocker)])
    assert exit_info.value.code.startswith("error: cannot write to")
    assert "episode:" not in capsys.readouterr().out


# Ctrl-C or kill while training: the flag stops the loop between two steps, the run saves once and exits 130;
# a second Ctrl-C that lands inside that save (sent from within it on purpose) does not cut it short.
@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
@pytest.mark.parametrize("signum, second", [(signal.SIGTERM, False), (signal.SIGINT, True)],
                         ids=["sigterm", "second-ctrl-c-during-the-save"])
def test_a_stop_signal_saves_once_and_exits_130(script, signum, second, tmp_path, capsys):
    name = NAMES[script]
    result = interrupt_script(script, "--no-render", "--seed", 0, "--episodes", 100000, "--save-dir", tmp_path,
                              signum=signum, second_signal_during_save=second, timeout=120)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert ("second SIGINT sent during the save" in result.stdout) == second
    assert result.stdout.count("interrupted: weights saved to") == 1
    weights = tmp_path / "save_model" / f"{name}.weights.h5"
    assert (tmp_path / "save_graph" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.rglob(".tmp-*"))
    load_module(script).main(["--play", "--load", str(weights), "--episodes", "1", "--max-steps", "30",
                              "--no-render"])                   # the saved weights load again
    assert re.search(r"^mean score: -?[\d.]+ over 1 episodes$", capsys.readouterr().out, re.MULTILINE)


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_ctrl_c_while_watching_prints_the_mean_so_far_and_exits_130(script):
    result = interrupt_script(script, "--play", "--no-render", "--episodes", 100000, timeout=120)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "\ninterrupted\n" in result.stdout
    played = int(re.search(r"^mean score: -?[\d.]+ over (\d+) episodes$", result.stdout, re.MULTILINE)[1])
    assert 1 <= played < 100000                           # the mean of the games played to the end
    assert f"goal reached: {played} of {played}" in result.stdout
    # Every greedy game here is the same one, so the mean is the score of any of them.
    assert printed_mean(result.stdout) == pytest.approx(printed_scores(result.stdout)[-1], abs=0.01)


# A signal that comes before the first training step (here: as soon as the flag is set up) stops the run
# with one line and exit 130, before any folder is made.
@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_a_signal_before_training_starts_exits_130_in_one_line(script, tmp_path, monkeypatch, capsys):
    module = load_module(script)

    class SignalledAtOnce(module.StopFlag):
        def __init__(self):
            super().__init__()
            signal.raise_signal(signal.SIGTERM)      # handled by the flag, on this (the main) thread

    monkeypatch.setattr(module, "StopFlag", SignalledAtOnce)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--no-render", "--save-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 130
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == ["interrupted before training started: nothing saved"]
    assert "episode:" not in captured.out
    assert not (tmp_path / "run").exists()


# ---- learning: a fresh agent, trained by the script, then played greedily ----
# The world and greedy play have no randomness, so one greedy game says it all. An untrained network, played
# greedily, walks back and forth until the step cap; a trained one reaches the goal (the shortest route is
# 8 steps). Seed rule: seed 0, the first one. Measured on 2 busy cores (seeds 0-4, seed 0 first): Deep SARSA
# with 600 episodes reached the goal with all 5 seeds (18, 8, 11, 12, 13 steps; about 20 s a run), REINFORCE
# with 1000 episodes with 4 (8, -, 8, 9, 8 steps; seed 1 never moves down and hits the cap; about 11 s).

def greedy_game(script, weights, capsys):
    load_module(script).main(["--play", "--load", str(weights), "--episodes", "1", "--no-render"])
    out = capsys.readouterr().out
    return re.search(r"^episode: 1 \| score: (-?[\d.]+) \| steps: (\d+) \| (goal reached|step cap hit)$", out,
                     re.MULTILINE)


@pytest.mark.parametrize("script, episodes", [(DEEP_SARSA, LEARN_EPISODES[DEEP_SARSA]),
                                              (REINFORCE, LEARN_EPISODES[REINFORCE])],
                         ids=["deep-sarsa", "reinforce"])
def test_a_fresh_agent_learns_to_reach_the_goal(script, episodes, tmp_path, capsys):
    result = run_script(script, "--no-render", "--seed", 0, "--episodes", episodes, "--save-dir", tmp_path,
                        timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(printed_scores(result.stdout)) == episodes
    game = greedy_game(script, tmp_path / "save_model" / f"{NAMES[script]}.weights.h5", capsys)
    assert game[3] == "goal reached" and int(game[2]) <= 30, game[0]       # a few detours at most


# ---- the window (a real Tk under Xvfb) ----

def test_rendered_episode_draws_the_dynamics(sarsa_world, tk_display):
    env = sarsa_world.Env(render=True, delay=0)
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


def test_closing_the_window_while_it_waits_goes_on_headless(sarsa_world, tk_display, capsys):
    env = sarsa_world.Env(render=True, delay=60)               # a step would wait a minute if nothing released it
    close_button = env.window.protocol("WM_DELETE_WINDOW")
    env.window.tk.call("after", 10, close_button)       # what the window manager does on a click
    env.reset()
    env.step(RIGHT)
    assert env.window is None and not env.rendering
    assert "window closed: going on without rendering" in capsys.readouterr().out
    env.step(DOWN)                                       # the world goes on, headless
    env.close()
