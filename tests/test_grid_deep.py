"""Tests of the moving-obstacle grid world chapters: 6-deep-sarsa and 7-reinforce."""
import errno
import os
import re
import signal
import subprocess
import sys

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
    # --load (in this process, to spare a TensorFlow start-up): training goes on from the saved weights and the
    # run they store: episode 4, Deep SARSA's epsilon where it stopped (the shipped weights, which store no run,
    # start at the book's 0.05: test_the_shipped_weights_store_no_run); and --play --load plays them.
    stopped_at = re.findall(r"epsilon: ([\d.]+)", result.stdout)[-1:]
    module = load_module(script)
    module.main(["--load", str(weights), "--episodes", "1", "--max-steps", "60", "--save-dir", str(tmp_path),
                 "--no-render"])
    out = capsys.readouterr().out
    assert len(printed_scores(out)) == 1 and re.search(r"^episode: 4 \|", out, re.MULTILINE)
    if script == DEEP_SARSA:
        epsilon = float(re.search(r"epsilon: ([\d.]+)", out).group(1))
        assert float(stopped_at[0]) - 0.01 < epsilon <= float(stopped_at[0])    # 60 steps more: 0.9999**60
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


# ---- nothing a reader trained is lost (issue 20) ----
# Quick runs: headless, seeded, short episodes. Saves are made to fail in this process, the way a full disk fails
# them (OSError ENOSPC from the weights' writer), and signals are sent from inside the run, so that nothing depends
# on timing.
QUICK = ["--no-render", "--seed", "0", "--max-steps", "20"]


def weights_in(folder, script):
    return folder / "save_model" / f"{NAMES[script]}.weights.h5"


def graph_in(folder, script):
    return folder / "save_graph" / f"{NAMES[script]}.png"


def stored(script, weights):
    """What `weights` stores beside them: plumbing.run_facts, as the script's artefacts.py reads it."""
    return load_module(script).stored_facts.__globals__["run_facts"](weights)


def tensorboard_steps(folder, tag="score"):
    """The steps of every `tag` scalar in the TensorBoard files of `folder`, in order."""
    import tensorflow as tf
    steps = []
    for events in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return sorted(steps)


def saves_of_weights(module, monkeypatch, fail=lambda call: False, meanwhile=lambda: None):
    """Wrap every save of the chapter's weights (artefacts.py's call of plumbing.save_run_weights): call
    `meanwhile()` first, then fail as a full disk does where fail(n) is true for the n-th save (1, 2, ...).
    Returns the list of the saves tried."""
    names = module.TrainingArtefacts.__init__.__globals__            # artefacts.py, as this chapter imported it
    real, calls = names["save_run_weights"], []

    def save_run_weights(model, path, *args, **kwargs):
        calls.append(path)
        meanwhile()
        if fail(len(calls)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(model, path, *args, **kwargs)

    monkeypatch.setitem(names, "save_run_weights", save_run_weights)
    return calls


def one_line_error(exit_info):
    """sys.exit(text): exit status 1 and one line, which the script prints."""
    message = exit_info.value.code
    assert isinstance(message, str) and "\n" not in message, message
    return message


# Row 1: a save that fails never crashes a run. A periodic one is one line and training goes on (the previous
# checkpoint kept); the final one exits 1 in one line naming the folder; the weights are saved before the graph.
@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_a_failed_periodic_save_is_one_line_and_training_goes_on(script, tmp_path, monkeypatch, capsys):
    module = load_module(script)
    monkeypatch.setattr(module, "SAVE_EVERY", 1)
    calls = saves_of_weights(module, monkeypatch, fail=lambda call: call == 2)        # the save after episode 2
    module.main([*QUICK, "--episodes", "3", "--save-dir", str(tmp_path)])
    out = capsys.readouterr().out
    folder = tmp_path / "save_model"
    assert out.count("could not save") == 1
    assert (f"could not save the weights in {folder} (No space left on device): the last checkpoint there is "
            "kept; trying again at the next save") in out.splitlines()
    assert len(calls) == 4 and len(printed_scores(out)) == 3                  # 3 periodic saves and the final one
    assert out.splitlines()[-3] == f"weights saved to {weights_in(tmp_path, script)}"
    assert stored(script, weights_in(tmp_path, script))["episodes"] == 3


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_a_failed_final_save_exits_1_in_one_line_keeping_the_last_checkpoint(script, tmp_path, monkeypatch,
                                                                             capsys):
    module = load_module(script)
    monkeypatch.setattr(module, "SAVE_EVERY", 1)
    saves_of_weights(module, monkeypatch, fail=lambda call: call >= 2)               # the disk is full after episode 1
    with pytest.raises(SystemExit) as exit_info:
        module.main([*QUICK, "--episodes", "3", "--save-dir", str(tmp_path)])
    assert one_line_error(exit_info) == (f"error: could not save the weights in {tmp_path / 'save_model'} (No "
                                         "space left on device); the last checkpoint saved there is kept")
    out = capsys.readouterr().out
    assert out.count("could not save the weights in") == 2 and "weights saved to" not in out
    first = printed_scores(out)[:1]
    facts = stored(script, weights_in(tmp_path, script))                     # the checkpoint of episode 1
    assert facts["episodes"] == 1 and facts["curve"] == [[pytest.approx(first[0], abs=0.05)]]
    assert graph_in(tmp_path, script).read_bytes()[:4] == b"\x89PNG"          # its graph, saved after it
    assert not list(tmp_path.rglob(".tmp-*"))


# Row 2: SIGHUP (a closed terminal) stops a run like Ctrl-C; a signal during start-up (before TensorFlow loads) is
# kept; a signal during the final save of a run that ended by itself exits 130 after that save.
@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_a_closed_terminal_saves_once_and_exits_130(script, tmp_path):
    result = interrupt_script(script, "--no-render", "--seed", 0, "--episodes", 100000, "--save-dir", tmp_path,
                              signum=signal.SIGHUP, timeout=120)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stdout.count("interrupted: weights saved to") == 1
    facts = stored(script, weights_in(tmp_path, script))
    assert facts["episodes"] == len(printed_scores(result.stdout)) >= 1       # the record of every episode played


# Runs a script as __main__ and sends it SIGHUP right after its catch_signals_at_start() call, noting whether
# Keras or TensorFlow had been imported by then: a signal that lands, for sure, while the script starts up.
START_UP_LAUNCHER = r'''
import os, runpy, signal, sys
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(script))
import plumbing
real_catch = plumbing.catch_signals_at_start

def catch_and_get_a_signal(module_name):
    real_catch(module_name)
    heavy = sorted(name for name in ("keras", "tensorflow") if name in sys.modules)
    print(f"test: imported before catching signals: {heavy}", flush=True)
    os.kill(os.getpid(), signal.SIGHUP)

plumbing.catch_signals_at_start = catch_and_get_a_signal
runpy.run_path(script, run_name="__main__")
'''


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
@pytest.mark.parametrize("mode", ["train", "play"])
def test_a_signal_during_start_up_exits_130_in_one_line(script, mode, tmp_path):
    args = ["--play"] if mode == "play" else ["--save-dir", tmp_path / "run"]
    env = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    env.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"})
    result = subprocess.run([sys.executable, "-c", START_UP_LAUNCHER, str(ROOT / script), "--no-render",
                             *map(str, args)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 130, result.stderr[-2000:]                    # not killed by SIGHUP
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "test: imported before catching signals: []"
    assert "episode:" not in result.stdout
    if mode == "play":
        assert lines[1:] == ["interrupted"]                                   # no game played, no mean
    else:
        assert result.stderr.strip().splitlines()[-1] == "interrupted before training started: nothing saved"
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_a_signal_during_the_final_save_exits_130_after_it(script, tmp_path, monkeypatch, capsys):
    module = load_module(script)
    saves_of_weights(module, monkeypatch, meanwhile=lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(SystemExit) as exit_info:
        module.main([*QUICK, "--episodes", "2", "--save-dir", str(tmp_path)])    # no periodic save: 2 < 100
    assert exit_info.value.code == 130
    out = capsys.readouterr().out
    assert len(printed_scores(out)) == 2
    assert out.splitlines()[-1] == (f"interrupted: weights saved to {weights_in(tmp_path, script)}, "
                                    f"graph to {graph_in(tmp_path, script)}")
    assert stored(script, weights_in(tmp_path, script))["episodes"] == 2        # the save went through


# Row 3: a fresh run keeps an earlier run's weights and graph, and says so in its first line.
@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_a_fresh_run_keeps_the_previous_runs_files(script, tmp_path, capsys):
    module = load_module(script)
    module.main([*QUICK, "--episodes", "1", "--save-dir", str(tmp_path)])
    capsys.readouterr()
    earlier = weights_in(tmp_path, script).read_bytes(), graph_in(tmp_path, script).read_bytes()
    module.main([*QUICK, "--episodes", "1", "--save-dir", str(tmp_path)])
    kept = [tmp_path / "save_model" / f"{NAMES[script]}.previous.weights.h5",
            tmp_path / "save_graph" / f"{NAMES[script]}.previous.png",
            tmp_path / "summary" / f"{NAMES[script]}.previous"]          # TensorBoard: a run of its own
    assert capsys.readouterr().out.splitlines()[0] == f"an earlier run's files are kept as {', '.join(map(str, kept))}"
    assert (kept[0].read_bytes(), kept[1].read_bytes()) == earlier
    assert any(kept[2].glob("events.out.tfevents.*"))
    assert weights_in(tmp_path, script).is_file() and graph_in(tmp_path, script).is_file()


# Row 4: --load goes on with the episode numbers, the curve, Deep SARSA's epsilon and the TensorBoard steps,
# in the same --save-dir (in place: nothing is kept aside) or in another one.
@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_a_resumed_run_goes_on_where_it_stopped(script, tmp_path, capsys):
    module = load_module(script)
    first, other = tmp_path / "first", tmp_path / "other"
    module.main([*QUICK, "--episodes", "2", "--save-dir", str(first)])
    out = capsys.readouterr().out
    weights = weights_in(first, script)
    facts = stored(script, weights)
    assert facts["episodes"] == 2
    assert facts["curve"] == [[pytest.approx(score, abs=0.05)] for score in printed_scores(out)]
    if script == DEEP_SARSA:
        assert facts["epsilon"] == pytest.approx(float(re.findall(r"epsilon: ([\d.]+)", out)[-1]), abs=5e-4)

    module.main([*QUICK, "--episodes", "2", "--save-dir", str(first), "--load", str(weights)])
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"going on from {weights}: 2 episodes done, episode 3 is next"
    assert re.findall(r"^episode: (\d+) \|", out, re.MULTILINE) == ["3", "4"]
    assert not list(first.rglob("*.previous.*"))
    resumed = stored(script, weights)
    assert resumed["episodes"] == 4 and resumed["curve"][:2] == facts["curve"]
    if script == DEEP_SARSA:                         # epsilon goes on decaying from where it stopped
        epsilon = float(re.search(r"epsilon: ([\d.]+)", out)[1])
        assert facts["epsilon"] * 0.9999 ** 20 - 5e-4 <= epsilon <= facts["epsilon"] + 5e-4

    module.main([*QUICK, "--episodes", "1", "--save-dir", str(other), "--load", str(weights)])
    assert re.findall(r"^episode: (\d+) \|", capsys.readouterr().out, re.MULTILINE) == ["5"]
    moved_on = stored(script, weights_in(other, script))
    assert moved_on["episodes"] == 5 and moved_on["curve"][:4] == resumed["curve"]
    assert tensorboard_steps(first / "summary" / NAMES[script]) == [1, 2, 3, 4]
    assert tensorboard_steps(other / "summary" / NAMES[script]) == [5]


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_the_shipped_weights_store_no_run_and_start_at_episode_1(script, tmp_path, capsys):
    assert stored(script, SHIPPED[script]) == {}
    load_module(script).main([*QUICK, "--episodes", "1", "--save-dir", str(tmp_path), "--load",
                              str(SHIPPED[script])])
    out = capsys.readouterr().out
    assert out.startswith("episode: 1 |")                                     # no "going on from" line
    if script == DEEP_SARSA:
        assert 0.049 < float(re.search(r"epsilon: ([\d.]+)", out)[1]) <= 0.05  # the book's value for loaded weights
    assert stored(script, weights_in(tmp_path, script))["episodes"] == 1


# Row 5: numbers that are not finite. A diverging run (--learning-rate 1e30) stops in one line, exit 1, and saves
# nothing: the last finite checkpoint stays. Weights or stored facts that are not finite are refused at --load.
@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_a_diverging_run_exits_1_in_one_line_and_saves_no_nan(script, tmp_path):
    result = run_script(script, *QUICK, "--episodes", 5, "--learning-rate", "1e30", "--save-dir", tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert re.fullmatch(r"error: training diverged \((the loss|a weight) is not a finite number\): stopped; "
                        r"nothing was saved \(try a smaller learning rate\)",                    # 5 < SAVE_EVERY
                        result.stderr.strip().splitlines()[-1])
    assert "weights saved" not in result.stdout
    assert not weights_in(tmp_path, script).exists() and not graph_in(tmp_path, script).exists()


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_a_resumed_run_that_diverges_keeps_the_checkpoint_it_went_on_from(script, tmp_path, capsys):
    module = load_module(script)
    module.main([*QUICK, "--episodes", "1", "--save-dir", str(tmp_path)])
    weights = weights_in(tmp_path, script)
    checkpoint = weights.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        module.main([*QUICK, "--episodes", "5", "--save-dir", str(tmp_path), "--load", str(weights),
                     "--learning-rate", "1e30"])
    assert one_line_error(exit_info).startswith("error: training diverged (")
    assert weights.read_bytes() == checkpoint
    capsys.readouterr()
    module.main(["--play", "--load", str(weights), "--episodes", "1", "--max-steps", "20", "--no-render"])
    assert "mean score:" in capsys.readouterr().out


def test_weights_that_are_not_finite_are_never_saved(tmp_path, capsys):
    module = load_module(DEEP_SARSA)
    agent = module.DeepSARSAgent(15, 5)
    stop = module.StopFlag()
    run = module.TrainingArtefacts(agent, module.parse_args(["--save-dir", str(tmp_path)]), "deep_sarsa", "test",
                                   {}, stop)
    run.save([1.0])
    checkpoint = weights_in(tmp_path, DEEP_SARSA).read_bytes()
    agent.model.set_weights([weight * np.nan for weight in agent.model.get_weights()])
    run.save([1.0, 2.0], final=True)
    assert weights_in(tmp_path, DEEP_SARSA).read_bytes() == checkpoint
    assert stop.requested and stop.diverged == "a weight"
    with pytest.raises(SystemExit) as exit_info:
        run.report()
    assert one_line_error(exit_info) == ("error: training diverged (a weight is not a finite number): stopped; the "
                                         f"last finite checkpoint is kept ({weights_in(tmp_path, DEEP_SARSA)}) "
                                         "(try a smaller learning rate)")
    assert "saved" not in capsys.readouterr().out


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_nan_weights_are_refused_at_load_and_play(script, tmp_path):
    module = load_module(script)
    model = module.build_model(15, 5)
    weights = model.get_weights()
    weights[0][0, 0] = np.nan                                                # as after a run that diverged
    model.set_weights(weights)
    path = tmp_path / "diverged.weights.h5"
    model.save_weights(path)
    for mode in (["--play"], ["--episodes", "1", "--save-dir", str(tmp_path / "run")]):
        with pytest.raises(SystemExit) as exit_info:
            module.main([*mode, "--no-render", "--load", str(path)])
        assert one_line_error(exit_info).startswith(f"error: cannot load weights from {path} (they hold numbers "
                                                    "that are not finite")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
@pytest.mark.parametrize("facts, why", [
    ({"curve": [1.0], "episodes": 1, "epsilon": float("nan")}, "epsilon = nan is out of range"),
    ({"curve": [1.0], "episodes": "one"}, "episodes = 'one' is out of range"),
    ({"curve": [1.0, float("inf")], "episodes": 2}, "its curve holds numbers that are not finite"),
    ({"curve": [1.0, 2.0], "episodes": 5}, "its curve is not one score per episode"),
], ids=["nan-epsilon", "text-episodes", "inf-score", "short-curve"])
def test_stored_facts_of_the_wrong_type_or_range_are_refused(script, facts, why, tmp_path):
    module = load_module(script)
    path = tmp_path / "odd.weights.h5"
    module.stored_facts.__globals__["save_run_weights"](module.build_model(15, 5), path, **facts)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--episodes", "1", "--no-render", "--save-dir", str(tmp_path / "run"), "--load", str(path)])
    assert one_line_error(exit_info) == (f"error: cannot read what {path} stores beside its weights ({why}); "
                                         "train anew without --load")
    assert not (tmp_path / "run").exists()


# Row 6: every value checked before anything is made: --load that is not a regular file (a FIFO: reading it would
# wait for ever), --save-dir "" or a symbolic-link loop, a `summary` that is a file.
@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_load_of_a_fifo_is_one_line_not_a_hang(script, tmp_path):
    fifo = tmp_path / "fifo.weights.h5"
    os.mkfifo(fifo)
    for mode in (["--play"], ["--episodes", "1", "--save-dir", str(tmp_path / "run")]):
        with pytest.raises(SystemExit) as exit_info:
            load_module(script).main([*mode, "--no-render", "--load", str(fifo)])
        assert one_line_error(exit_info).startswith(f"error: cannot load weights from {fifo} (not a regular file); ")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_an_empty_or_looping_save_dir_is_a_command_line_error(script, tmp_path, capsys):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for save_dir, why in [("", "must name a folder, got an empty string"),
                          (tmp_path / "a", "loop"), (tmp_path / "a" / "run", "loop")]:      # Python words it
        with pytest.raises(SystemExit) as exit_info:
            load_module(script).parse_args(["--save-dir", str(save_dir)])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert "error: argument --save-dir: " in error and why in error.lower()


@pytest.mark.parametrize("script", [DEEP_SARSA, REINFORCE])
def test_a_summary_that_is_a_file_is_one_line_before_anything_is_made(script, tmp_path, capsys):
    (tmp_path / "summary").write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        load_module(script).main([*QUICK, "--episodes", "1", "--save-dir", str(tmp_path)])
    assert one_line_error(exit_info) == f"error: cannot write to {tmp_path / 'summary' / NAMES[script]}: Not a directory"
    assert "episode:" not in capsys.readouterr().out
    assert sorted(path.name for path in tmp_path.iterdir()) == ["summary"]


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
