"""CartPole DQN and A2C: update rules against hand-computed numbers, the replay memory, the target network,
seeding, learning runs, the shipped weights, and the command line (smoke runs, bad input, stop signals)."""
import errno
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, chapter_files, interrupt_script, load_module, printed_mean, printed_scores, run_script, truncate_file

DQN = "2-cartpole/1-dqn/cartpole_dqn.py"
A2C = "2-cartpole/2-actor-critic/cartpole_a2c.py"
SHIPPED = {DQN: ROOT / "2-cartpole/1-dqn/save_model/cartpole_dqn_trained.weights.h5",
           A2C: ROOT / "2-cartpole/2-actor-critic/save_model/cartpole_a2c_trained.weights.h5"}
A2C_LEARN_EPISODES = 300          # training budget of the A2C learning test (seed 0)
# TensorFlow's C++ start-up lines on stderr (not ours): skipped when counting the lines a script printed.
TF_NOISE = re.compile(r"^(WARNING: All log messages before absl|[IWEF]\d{4} )")


def our_stderr_lines(completed):
    return [line for line in completed.stderr.splitlines() if line.strip() and not TF_NOISE.match(line)]


# main() installs the scripts' stop flag (SIGINT and SIGTERM handlers) in this process: put pytest's back.
pytestmark = pytest.mark.usefixtures("own_signal_handlers")


@pytest.fixture(scope="module")
def dqn():
    return load_module(DQN)


@pytest.fixture(scope="module")
def a2c():
    return load_module(A2C)


def first_layer_readout(model, out_kernel, out_bias):
    """Weights for which the network outputs out_bias + out_kernel * relu(relu(s[0])):
    hidden unit 0 of every hidden layer carries relu(s[0]); every other weight is zero."""
    weights = [np.zeros_like(w) for w in model.get_weights()]
    for kernel in range(0, len(weights) - 2, 2):
        weights[kernel][0, 0] = 1.0
    weights[-2][0, :] = out_kernel
    weights[-1][:] = out_bias
    model.set_weights(weights)


# ---- DQN ----
def test_dqn_targets_terminal_truncated_and_ordinary(dqn):
    agent = dqn.DQNAgent(4, 2)
    # Q_target(s') = [0.5 + 2 relu(s'0), 1 - relu(s'0)]
    first_layer_readout(agent.target_model, [2.0, -1.0], [0.5, 1.0])
    next_states = np.array([[1.0, 0, 0, 0],      # ordinary step:   Q' = [2.5, 0.0]
                            [-1.0, 0, 0, 0],     # 500-step limit:  Q' = [0.5, 1.0]
                            [1.0, 0, 0, 0]],     # pole fell:       nothing follows
                           dtype=np.float32)
    terminated = [False, False, True]            # the truncated step is not terminated
    rewards = np.array([dqn.shape_reward(1.0, t) for t in terminated], dtype=np.float32)
    dones = np.array(terminated, dtype=np.float32)
    targets = agent.compute_targets(rewards, next_states, dones).numpy()
    np.testing.assert_allclose(targets, [1 + 0.99 * 2.5, 1 + 0.99 * 1.0, -100.0], rtol=1e-6)


def test_dqn_numpy_forward_pass_matches_the_network(dqn):
    agent = dqn.DQNAgent(4, 2)
    states = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(dqn.q_values_numpy(agent.weights, states),
                               agent.model(states).numpy(), rtol=1e-5, atol=1e-6)


def test_dqn_training_step_moves_q_toward_the_target_and_refreshes_acting_weights(dqn):
    agent = dqn.DQNAgent(4, 2)
    agent.epsilon = 0.5
    first_layer_readout(agent.target_model, [0.0, 0.0], [0.0, 0.0])      # targets = rewards
    state = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    for _ in range(agent.batch_size):
        agent.append_sample(state, 1, 5.0, state, True)
    before = agent.model(state[None]).numpy()[0]
    for _ in range(20):
        agent.train_model()
    after = agent.model(state[None]).numpy()[0]
    assert abs(after[1] - 5.0) < abs(before[1] - 5.0)
    np.testing.assert_allclose(dqn.q_values_numpy(agent.weights, state), after, rtol=1e-5, atol=1e-5)
    assert agent.epsilon == pytest.approx(0.5 * 0.999 ** 20)


def test_replay_memory_wraps_around_and_samples_without_replacement(dqn):
    memory = dqn.ReplayMemory(3, state_size=4)
    for t in range(5):                             # transitions 3 and 4 overwrite 0 and 1
        memory.append(np.full(4, t), t % 2, float(t), np.full(4, t + 0.5), t == 4)
    assert len(memory) == 3
    assert memory.next_index == 2
    np.testing.assert_array_equal(memory.rows[:, 5], [3.0, 4.0, 2.0])            # rewards
    np.testing.assert_array_equal(memory.rows[0], [3, 3, 3, 3, 1, 3, 3.5, 3.5, 3.5, 3.5, 0])
    np.testing.assert_array_equal(memory.rows[1, -1], 1.0)                        # done of t = 4
    batch = memory.sample(3)
    assert sorted(batch[:, 5]) == [2.0, 3.0, 4.0]                                 # each row once
    assert set(memory.sample(2)[:, 5]) <= {2.0, 3.0, 4.0}
    with pytest.raises(ValueError):
        memory.sample(4)


def same_weights(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_target_network_is_a_copy_not_a_reference(dqn):
    agent = dqn.DQNAgent(4, 2)
    assert same_weights(agent.model, agent.target_model)                # copied at the start
    rng = np.random.default_rng(1)
    for _ in range(agent.batch_size):
        agent.append_sample(rng.normal(size=4), int(rng.integers(2)), 1.0, rng.normal(size=4), False)
    agent.train_model()
    assert not same_weights(agent.model, agent.target_model)            # training moves only the online network
    agent.update_target_model()
    assert same_weights(agent.model, agent.target_model)


# ---- A2C ----
def test_a2c_advantage_and_targets(a2c):
    agent = a2c.A2CAgent(4, 2)
    first_layer_readout(agent.critic, [2.0], [0.5])             # V(s) = 0.5 + 2 relu(s0)
    states = np.array([[0.0, 0, 0, 0], [0.0, 0, 0, 0], [1.0, 0, 0, 0]], dtype=np.float32)   # V 0.5 0.5 2.5
    next_states = np.array([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [-3.0, 0, 0, 0]], dtype=np.float32)  # 2.5 2.5 0.5
    terminated = [False, False, True]      # ordinary step, the 500-step limit (not terminal), pole fell
    rewards = np.array([a2c.shape_reward(1.0, t) for t in terminated], dtype=np.float32)
    targets, advantages = agent.compute_targets(states, rewards, next_states,
                                                np.array(terminated, dtype=np.float32))
    np.testing.assert_allclose(targets.numpy(), [1 + 0.99 * 2.5, 1 + 0.99 * 2.5, -100.0], rtol=1e-6)
    np.testing.assert_allclose(advantages.numpy(), [3.475 - 0.5, 3.475 - 0.5, -100.0 - 2.5], rtol=1e-6)


def test_a2c_update_follows_the_sign_of_the_advantage(a2c):
    agent = a2c.A2CAgent(4, 2)
    state = np.array([0.3, -0.2, 0.1, 0.05], dtype=np.float32)
    policy_before = a2c.policy_numpy(agent.weights, state)
    value_before = float(agent.critic(state[None])[0, 0])
    agent.train_model(state, 0, 50.0, state, True)     # target 50 > V(s): a good action
    policy_after = a2c.policy_numpy(agent.weights, state)
    assert policy_after[0] > policy_before[0]
    assert abs(float(agent.critic(state[None])[0, 0]) - 50.0) < abs(value_before - 50.0)
    agent.train_model(state, 0, -100.0, state, True)   # a failure: now it is a bad action
    assert a2c.policy_numpy(agent.weights, state)[0] < policy_after[0]
    np.testing.assert_allclose(a2c.policy_numpy(agent.weights, state[None]),
                               agent.actor(state[None]).numpy(), rtol=1e-5, atol=1e-6)


# ---- the scripts ----
@pytest.mark.parametrize("script", [DQN, A2C])
def test_smoke_run_saves_everything_and_the_same_seed_repeats(script, tmp_path):
    name = script.rsplit("/", 1)[1][:-3]
    runs = [run_script(script, "--episodes", "4", "--seed", "3", "--save-dir", tmp_path / folder, timeout=180)
            for folder in ("a", "b")]
    for done in runs:
        assert done.returncode == 0, done.stderr
        assert "not solved in 4 episodes" in done.stdout
    assert len(printed_scores(runs[0].stdout)) == 4
    lines = [[line for line in run.stdout.splitlines() if line.startswith("episode: ")] for run in runs]
    assert lines[0] == lines[1]                                      # same seed, same episodes (every number)
    assert (tmp_path / "a/save_model" / f"{name}.weights.h5").stat().st_size > 0
    assert (tmp_path / "a/save_graph" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.rglob(".tmp-*"))
    assert list((tmp_path / "a/summary" / name).glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_dqn_reaches_the_stop_rule(tmp_path):
    done = run_script(DQN, "--seed", "6", "--save-dir", tmp_path, timeout=300)   # 109 episodes here
    assert done.returncode == 0, done.stderr
    assert re.search(r"^solved at episode \d+", done.stdout, re.M), done.stdout[-2000:]
    assert np.mean(printed_scores(done.stdout)[-10:]) > 490
    assert (tmp_path / "save_model/cartpole_dqn.weights.h5").stat().st_size > 0


@pytest.mark.parametrize("script", [DQN, A2C])
def test_shipped_weights_play_well_and_write_nothing(script):
    before = chapter_files(script)
    done = run_script(script, "--play", "--no-render", "--episodes", "100", "--seed", "0", timeout=180)
    assert done.returncode == 0, done.stderr
    assert len(printed_scores(done.stdout)) == 100
    assert re.search(r"^mean score: [\d.]+ over 100 episodes$", done.stdout, re.M)
    assert printed_mean(done.stdout) >= 475
    assert chapter_files(script) == before             # watching leaves the chapter folder as it was


def test_missing_weights_exit_1_with_one_line(tmp_path):
    missing = tmp_path / "missing.weights.h5"
    done = run_script(A2C, "--play", "--load", missing, timeout=180)
    assert done.returncode == 1
    lines = our_stderr_lines(done)
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot load weights from {missing}"), done.stderr
    assert "episode:" not in done.stdout


@pytest.mark.parametrize("script, weights", [
    (DQN, lambda tmp: tmp / "missing.weights.h5"),
    (DQN, lambda tmp: truncate_file(SHIPPED[DQN], tmp / "truncated.weights.h5")),
    (A2C, lambda tmp: truncate_file(SHIPPED[A2C], tmp / "truncated.weights.h5")),
    (A2C, lambda tmp: SHIPPED[DQN]),                       # the other network's weights
    (DQN, lambda tmp: SHIPPED[A2C]),
], ids=["missing", "truncated-dqn", "truncated-a2c", "dqn-into-a2c", "a2c-into-dqn"])
def test_bad_weights_are_one_line_errors(script, weights, tmp_path, dqn, a2c):
    module = dqn if script == DQN else a2c
    agent = module.DQNAgent(4, 2) if script == DQN else module.A2CAgent(4, 2)
    path = weights(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        agent.load(path)
    message = exit_info.value.code           # sys.exit(message): printed to stderr, exit status 1
    assert isinstance(message, str) and "\n" not in message
    assert message.startswith(f"error: cannot load weights from {path} (") and "train one with" in message


# A bad --load is found before any folder is made: the run leaves nothing behind.
@pytest.mark.parametrize("script", [DQN, A2C])
def test_a_bad_load_leaves_no_folder_behind(script, tmp_path, dqn, a2c):
    module = dqn if script == DQN else a2c
    truncated = truncate_file(SHIPPED[script], tmp_path / "truncated.weights.h5")
    for path in (tmp_path / "missing.weights.h5", truncated):
        with pytest.raises(SystemExit) as exit_info:
            module.main(["--load", str(path), "--save-dir", str(tmp_path / "run"), "--episodes", "1"])
        assert str(exit_info.value.code).startswith(f"error: cannot load weights from {path} (")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("script", [DQN, A2C])
def test_unwritable_save_dir_is_a_one_line_error(script, tmp_path, capsys, dqn, a2c):
    module = dqn if script == DQN else a2c
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--save-dir", str(blocker), "--episodes", "1"])
    assert str(exit_info.value.code).startswith(f"error: cannot write to {blocker / 'save_model'}")
    assert "episode:" not in capsys.readouterr().out                  # before training started


# The world, the row layout and the saving are the same files in both CartPole folders (each folder stays
# standalone): the copies must not drift apart.
@pytest.mark.parametrize("name", ["environment.py", "training_record.py", "transitions.py"])
def test_the_cartpole_folders_share_their_helper_modules_byte_for_byte(name):
    dqn_copy, a2c_copy = (ROOT / DQN).parent / name, (ROOT / A2C).parent / name
    assert dqn_copy.read_bytes() == a2c_copy.read_bytes(), f"{dqn_copy} and {a2c_copy} differ"


def test_record_keeps_every_frame_at_half_size_and_writes_the_gif_once_on_close(tmp_path, monkeypatch, capsys):
    for driver in ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):      # make_env sets them; put them back afterwards
        monkeypatch.setenv(driver, "dummy")
    environment = load_module("2-cartpole/1-dqn/environment.py")
    target = tmp_path / "new folder" / "watch.gif"
    env = environment.make_env(True, target)                   # --render --record: drawn off-screen
    assert "no window opens" in capsys.readouterr().out
    env.reset(seed=0)
    for action in (0, 1, 0):
        env.step(action)
    assert len(env.frames) == 4                                # after the reset and after every step
    assert env.frames[0].shape == (200, 300, 3) and env.frames[0].dtype == np.uint8
    env.close()
    assert target.read_bytes()[:6] == b"GIF89a"
    assert capsys.readouterr().out.splitlines() == [f"recorded 4 frames to {target}"]
    env.close()                                                # a second close writes nothing again
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("script", [DQN, A2C])
def test_help_documents_the_hyperparameters_and_bad_flags_exit_2(script, capsys, dqn, a2c):
    module = dqn if script == DQN else a2c
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())                  # argparse wraps lines anywhere
    assert "--play" in out and "--save-dir" in out and "book hyperparameters: gamma 0.99" in out
    assert "(default: False)" in out and "(default " not in out      # each default shown once, by argparse
    for bad in (["--no-such-flag"], ["--episodes", "0"], ["--seed", "one"]):
        with pytest.raises(SystemExit) as exit_info:
            module.parse_args(bad)
        assert exit_info.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert module.parse_args([]).episodes is None and module.parse_args([]).render is False


# Ctrl-C or kill while training: the flag stops the loop between two steps, the run saves once and exits 130;
# a second Ctrl-C that lands inside that save (sent from within it on purpose) does not cut it short.
# DQN resumes from the shipped weights (--load): long episodes, and the resume path (epsilon 0.01).
@pytest.mark.parametrize("script", [DQN, A2C])
@pytest.mark.parametrize("signum, second", [(signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGHUP, False)],
                         ids=["sigterm", "second-ctrl-c-during-the-save", "sighup-closed-terminal"])
def test_a_stop_signal_saves_once_and_exits_130(script, signum, second, tmp_path, capsys, dqn, a2c):
    name = script.rsplit("/", 1)[1][:-3]
    resume = ["--load", SHIPPED[DQN]] if script == DQN else []
    output = interrupt_script(script, "--seed", 0, "--save-dir", tmp_path, *resume, signum=signum,
                              second_signal_during_save=second, when=lambda line: line.startswith("episode: 2 "),
                              timeout=120)
    assert output.returncode == 130, output.stderr[-2000:]
    assert "Traceback" not in output.stderr
    assert ("second SIGINT sent during the save" in output.stdout) == second
    assert ("epsilon starts at 0.01" in output.stdout) == (script == DQN)
    assert re.search(r"^episode: 1 \|", output.stdout, re.M) and "resuming" not in output.stdout   # no facts shipped
    assert output.stdout.count("interrupted at episode") == 1
    weights = tmp_path / "save_model" / f"{name}.weights.h5"
    assert (tmp_path / "save_graph" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.rglob(".tmp-*"))
    module = dqn if script == DQN else a2c
    module.main(["--play", "--load", str(weights), "--episodes", "1"])      # the saved weights load again
    assert re.search(r"^mean score: [\d.]+ over 1 episodes$", capsys.readouterr().out, re.M)


@pytest.mark.parametrize("script", [DQN, A2C])
def test_ctrl_c_while_watching_prints_the_mean_so_far_and_exits_130(script):
    output = interrupt_script(script, "--play", "--episodes", 100000, timeout=120)
    assert output.returncode == 130, output.stderr[-2000:]
    assert "Traceback" not in output.stderr
    assert "\ninterrupted\n" in output.stdout
    played = int(re.search(r"^mean score: [\d.]+ over (\d+) episodes$", output.stdout, re.M)[1])
    assert 1 <= played < 100000                           # the mean of the games played to the end
    assert printed_mean(output.stdout) >= 475             # the shipped agent balances all 500 steps


# A signal that comes before the first training step (here: as soon as the flag is set up) stops the run
# with one line and exit 130, before any folder is made.
@pytest.mark.parametrize("script", [DQN, A2C])
def test_a_signal_before_training_starts_exits_130_in_one_line(script, tmp_path, monkeypatch, capsys, dqn, a2c):
    module = dqn if script == DQN else a2c

    class SignalledAtOnce(module.StopFlag):
        def __init__(self):
            super().__init__()
            signal.raise_signal(signal.SIGTERM)      # handled by the flag, on this (the main) thread

    monkeypatch.setattr(module, "StopFlag", SignalledAtOnce)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--save-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 130
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == ["interrupted before training started: nothing saved"]
    assert "episode:" not in captured.out
    assert not (tmp_path / "run").exists()


# ---- learning: a fresh A2C agent, trained by the script ----
# Random play lasts about 22 steps. Seed rule: seed 0, the first one. Measured on 2 busy cores with 300
# episodes, seeds 0-4 (seed 0 first): all 5 reached the stop rule, at episodes 234, 198, 261, 186, 203, with a
# mean of the last 20 scores of 331-466 (27-38 s a run); with 200 episodes seed 0 was still at 112.
def test_a2c_learns_to_balance_far_better_than_random(tmp_path):
    done = run_script(A2C, "--seed", 0, "--episodes", A2C_LEARN_EPISODES, "--save-dir", tmp_path, timeout=400)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = printed_scores(done.stdout)
    assert np.mean(scores[:20]) < 50                   # it starts near random play ...
    assert np.mean(scores[-20:]) > 150, scores[-20:]   # ... and ends far above it


# ---- nothing a reader trained is lost (issue 20): saving, signals, reruns, resuming, NaN, bad values ----
def chapter(script, dqn, a2c):
    return dqn if script == DQN else a2c


def new_agent(module):
    return module.DQNAgent(4, 2) if hasattr(module, "DQNAgent") else module.A2CAgent(4, 2)


def record_names(module):
    """The namespace of the chapter's training_record.py (what TrainingRecord calls), for monkeypatching."""
    return module.TrainingRecord.__init__.__globals__


def exit_code(module, *args):
    """main(args) in this process: its exit status (None when it returned) or its one-line message."""
    try:
        module.main([str(arg) for arg in args])
    except SystemExit as exit_info:
        return exit_info.code
    return None


def spy_on_saves(monkeypatch, module, fail=lambda episode, calls: False):
    """Record every save of the weights ("weights", episode) and of the graph ("graph", episodes drawn), in order;
    a weights save for which fail(episode, number of weights saves so far) is true raises a full disk."""
    names, events = record_names(module), []
    real_weights, real_graph = names["save_run_weights"], names["save_graph"]

    def save_run_weights(model, path, curve=None, **facts):
        calls = sum(event[0].startswith("weights") for event in events)
        events.append(("weights", facts["episode"]))
        if fail(facts["episode"], calls):
            events[-1] = ("weights failed", facts["episode"])
            raise OSError(errno.ENOSPC, "No space left on device")
        real_weights(model, path, curve=curve, **facts)

    def save_graph(path, x, scores, *args, **kwargs):
        events.append(("graph", len(scores)))
        real_graph(path, x, scores, *args, **kwargs)
    monkeypatch.setitem(names, "save_run_weights", save_run_weights)
    monkeypatch.setitem(names, "save_graph", save_graph)
    return events


def facts_of(module, path):
    return record_names(module)["stored_facts"](path)


def weights_path(script, folder):
    return folder / "save_model" / f"{script.rsplit('/', 1)[1][:-3]}.weights.h5"


def all_finite(path):
    import h5py
    arrays = []
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    return bool(arrays) and all(np.isfinite(np.asarray(array, dtype=np.float64)).all() for array in arrays)


# Row 1: saving never crashes a run. Every 10 episodes the weights are saved, then the graph (never ahead of the
# weights); a periodic save on a full disk is one line and training goes on; the end saves once more.
@pytest.mark.parametrize("script", [DQN, A2C])
def test_saves_every_10_episodes_and_a_failed_save_is_one_line_and_training_goes_on(script, tmp_path, monkeypatch,
                                                                                     capsys, dqn, a2c):
    module = chapter(script, dqn, a2c)
    events = spy_on_saves(monkeypatch, module, fail=lambda episode, calls: calls == 0)
    assert exit_code(module, "--episodes", 21, "--seed", 0, "--save-dir", tmp_path) is None
    assert events == [("weights failed", 10), ("weights", 20), ("graph", 20), ("weights", 21), ("graph", 21)]
    out = capsys.readouterr().out
    failures = [line for line in out.splitlines() if line.startswith("could not save")]
    assert failures == [f"could not save the weights in {tmp_path / 'save_model'} (No space left on device): the "
                        "last checkpoint there is kept; trying again at the next save"]
    assert out.index(failures[0]) < out.index("episode: 11 ")                 # training went on
    assert len(printed_scores(out)) == 21 and "not solved in 21 episodes" in out
    facts = facts_of(module, weights_path(script, tmp_path))
    assert facts["episode"] == 21 and facts["scores"] == printed_scores(out)
    assert not list(tmp_path.rglob(".tmp-*"))


# Row 1: a final save that fails ends the run with one line, exit 1, naming the folder; the checkpoint of the last
# periodic save stays (a full disk, or a folder where the weights file goes).
@pytest.mark.parametrize("script, blocker", [(DQN, "full disk"), (A2C, "full disk"), (DQN, "folder in the way")])
def test_a_failed_final_save_exits_1_in_one_line_and_keeps_the_last_checkpoint(script, blocker, tmp_path,
                                                                               monkeypatch, capsys, dqn, a2c):
    module = chapter(script, dqn, a2c)
    weights = weights_path(script, tmp_path)
    if blocker == "full disk":
        events = spy_on_saves(monkeypatch, module, fail=lambda episode, calls: episode == 12)
    else:
        (weights / "in the way").mkdir(parents=True)
    code = exit_code(module, "--episodes", 12, "--seed", 0, "--save-dir", tmp_path)
    reason = "No space left on device" if blocker == "full disk" else "Is a directory"
    assert code == (f"error: could not save the weights in {tmp_path / 'save_model'} ({reason}); the last "
                    "checkpoint saved there is kept")
    out = capsys.readouterr().out
    assert "not solved in 12 episodes" in out and "weights: " not in out
    if blocker == "full disk":
        assert events == [("weights", 10), ("graph", 10), ("weights failed", 12)]
        assert facts_of(module, weights)["episode"] == 10            # the periodic save of episode 10 stays
        new_agent(module).load(weights)
    else:
        assert out.count("could not save the weights") == 1          # the periodic save of episode 10
        assert weights.is_dir() and not (tmp_path / "save_graph" / weights.name).exists()
    assert not list(tmp_path.rglob(".tmp-*"))


# Row 2: a signal during the final save of a run that ended by itself: the save goes on, then exit 130.
@pytest.mark.parametrize("script", [DQN, A2C])
def test_a_signal_during_the_final_save_of_a_finished_run_exits_130(script, tmp_path, monkeypatch, capsys, dqn, a2c):
    module = chapter(script, dqn, a2c)
    names = record_names(module)
    real = names["save_run_weights"]

    def save_and_get_a_signal(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)            # handled by the run's stop flag: it only raises the flag
        real(*args, **kwargs)
    monkeypatch.setitem(names, "save_run_weights", save_and_get_a_signal)
    assert exit_code(module, "--episodes", 3, "--seed", 0, "--save-dir", tmp_path) == 130
    out = capsys.readouterr().out
    assert "not solved in 3 episodes" in out and f"weights: {weights_path(script, tmp_path)}" in out
    assert facts_of(module, weights_path(script, tmp_path))["episode"] == 3
    assert (tmp_path / "save_graph" / f"{weights_path(script, tmp_path).name[:-11]}.png").exists()


# Row 2: a stop signal while the script starts (TensorFlow loading) is kept: one line, exit 130, nothing made.
# The launcher sends SIGHUP from inside the script's first signal.signal(SIGHUP, ...) call (no timing race).
_STARTUP_LAUNCHER = r'''
import os, runpy, signal, sys
real_signal = signal.signal

def install_then_signal(signum, handler):
    previous = real_signal(signum, handler)
    if signum == signal.SIGHUP and not getattr(install_then_signal, "sent", False):
        install_then_signal.sent = True
        print(f"test: SIGHUP sent during start-up (keras imported: {'keras' in sys.modules}, "
              f"gymnasium imported: {'gymnasium' in sys.modules})", flush=True)
        os.kill(os.getpid(), signal.SIGHUP)
    return previous
signal.signal = install_then_signal
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
runpy.run_path(script, run_name="__main__")
'''


@pytest.mark.parametrize("script", [DQN, A2C])
@pytest.mark.parametrize("watching", [False, True], ids=["training", "play"])
def test_a_signal_during_start_up_exits_130_in_one_line(script, watching, tmp_path):
    arguments = ["--play", "--episodes", 3] if watching else ["--save-dir", tmp_path / "run"]
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"})
    done = subprocess.run([sys.executable, "-c", _STARTUP_LAUNCHER, str(ROOT / script), *map(str, arguments)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 130, done.stderr[-2000:]
    assert "test: SIGHUP sent during start-up (keras imported: False, gymnasium imported: False)" in done.stdout
    assert "Traceback" not in done.stderr and "episode:" not in done.stdout
    if watching:
        assert "\ninterrupted\n" in done.stdout and "mean score" not in done.stdout
        assert our_stderr_lines(done) == []
    else:
        assert our_stderr_lines(done) == ["interrupted before training started: nothing saved"]
        assert not (tmp_path / "run").exists()


# Row 3: a fresh run keeps an earlier run's weights and graph (renamed *.previous.*) and says so in one line.
@pytest.mark.parametrize("script", [DQN, A2C])
def test_a_rerun_keeps_the_earlier_runs_files(script, tmp_path, capsys, dqn, a2c):
    module = chapter(script, dqn, a2c)
    weights = weights_path(script, tmp_path)
    graph = tmp_path / "save_graph" / f"{weights.name[:-11]}.png"
    assert exit_code(module, "--episodes", 2, "--seed", 0, "--save-dir", tmp_path) is None
    first = weights.read_bytes(), graph.read_bytes()
    assert "earlier run" not in capsys.readouterr().out
    assert exit_code(module, "--episodes", 1, "--seed", 1, "--save-dir", tmp_path) is None
    name = weights.name[:-11]
    kept = (weights.with_name(f"{name}.previous.weights.h5"), graph.with_suffix(".previous.png"),
            tmp_path / "summary" / f"{name}.previous")               # TensorBoard: the earlier run apart
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"an earlier run's files are kept as {', '.join(map(str, kept))}"
    assert (kept[0].read_bytes(), kept[1].read_bytes()) == first
    assert any(kept[2].glob("events.out.tfevents.*"))
    assert facts_of(module, weights)["episode"] == 1


def tensorboard_steps(folder):
    import tensorflow as tf
    return sorted({event.step for path in folder.glob("events.out.tfevents.*")
                   for event in tf.compat.v1.train.summary_iterator(str(path)) if event.summary.value})


# Row 4: --load of weights this script saved goes on: episode numbers, scores (curve and stop rule), TensorBoard
# steps and the DQN's epsilon, in another folder or in place (where nothing is renamed).
@pytest.mark.parametrize("script", [DQN, A2C])
def test_load_resumes_the_episodes_the_curve_the_tensorboard_steps_and_epsilon(script, tmp_path, monkeypatch,
                                                                              capsys, dqn, a2c):
    module = chapter(script, dqn, a2c)
    if script == DQN:
        monkeypatch.setattr(module, "TRAIN_START", 64)               # train (and decay epsilon) from the start
    first, second = tmp_path / "first", tmp_path / "second"
    assert exit_code(module, "--episodes", 12, "--seed", 0, "--save-dir", first) is None
    first_scores = printed_scores(capsys.readouterr().out)
    facts = facts_of(module, weights_path(script, first))
    assert facts["episode"] == 12 and facts["scores"] == first_scores
    assert ("epsilon" in facts) == (script == DQN)
    if script == DQN:
        assert 0.01 < facts["epsilon"] < 0.99

    assert exit_code(module, "--load", weights_path(script, first), "--episodes", 14, "--save-dir", second) is None
    out = capsys.readouterr().out
    if script == DQN:
        assert f"; epsilon starts at {facts['epsilon']:g}\n" in out
    assert f"resuming {weights_path(script, first)} at episode 13: its scores, graph and TensorBoard steps go on" in out
    assert re.findall(r"^episode: (\d+) ", out, re.M) == ["13", "14"]
    resumed = facts_of(module, weights_path(script, second))
    assert resumed["episode"] == 14 and resumed["scores"] == first_scores + printed_scores(out)
    assert tensorboard_steps(second / "summary" / weights_path(script, first).name[:-11]) == [13, 14]

    # In place: the same file goes on (nothing renamed); a checkpoint that already has the episodes asked for is
    # refused in one line before anything is made.
    assert exit_code(module, "--load", weights_path(script, first), "--episodes", 13, "--save-dir", first) is None
    assert "earlier run" not in capsys.readouterr().out and not list(first.rglob("*.previous.*"))
    assert facts_of(module, weights_path(script, first))["episode"] == 13
    code = exit_code(module, "--load", weights_path(script, first), "--episodes", 13, "--save-dir", tmp_path / "no")
    assert code == (f"error: {weights_path(script, first)} already holds 13 episodes of training; to go on, pass "
                    "--episodes N with N above 13")
    assert not (tmp_path / "no").exists()


# Row 4: the shipped weights hold no run facts: training from them starts at episode 1 and says nothing new.
def test_the_shipped_weights_start_at_episode_1(tmp_path, capsys, a2c):
    assert exit_code(a2c, "--load", SHIPPED[A2C], "--episodes", 1, "--seed", 0, "--save-dir", tmp_path) is None
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"loaded {SHIPPED[A2C]}" and lines[1].startswith("episode: 1 |")
    assert facts_of(a2c, weights_path(A2C, tmp_path))["episode"] == 1


# Row 5: weights that are not finite are refused, for training and for watching, before anything is made.
@pytest.mark.parametrize("script", [DQN, A2C])
def test_nan_weights_are_refused_at_load_and_play(script, tmp_path, dqn, a2c):
    module = chapter(script, dqn, a2c)
    agent = new_agent(module)
    agent.model.set_weights([np.full_like(weights, np.nan) for weights in agent.model.get_weights()])
    nan_file = tmp_path / "diverged.weights.h5"
    agent.model.save_weights(str(nan_file))
    for arguments in (["--play"], ["--save-dir", tmp_path / "run"]):
        code = exit_code(module, *arguments, "--load", nan_file, "--episodes", 1)
        assert code.startswith(f"error: cannot load weights from {nan_file} (they hold numbers that are not finite")
        assert "\n" not in code
    assert not (tmp_path / "run").exists()


# Row 5: facts stored beside the weights are checked (type, range, a finite curve that matches the episode count).
BAD_FACTS = {"nan epsilon": dict(episode=2, curve=[10.0, 12.0], epsilon=float("nan")),
             "epsilon above 1": dict(episode=2, curve=[10.0, 12.0], epsilon=3.0),
             "text episode": dict(episode="2", curve=[10.0, 12.0]),
             "negative episode": dict(episode=-1),
             "nan in the curve": dict(episode=2, curve=[10.0, float("nan")]),
             "curve shorter than the episodes": dict(episode=5, curve=[10.0, 12.0])}


@pytest.mark.parametrize("script", [DQN, A2C])
@pytest.mark.parametrize("bad", sorted(BAD_FACTS))
def test_bad_stored_facts_are_one_line_errors(script, bad, tmp_path, dqn, a2c):
    module = chapter(script, dqn, a2c)
    path = tmp_path / "bad.weights.h5"
    record_names(module)["save_run_weights"](new_agent(module).model, path, **BAD_FACTS[bad])
    code = exit_code(module, "--load", path, "--episodes", 3, "--save-dir", tmp_path / "run")
    assert code.startswith(f"error: cannot read what {path} stores beside its weights (") and "\n" not in code
    assert not (tmp_path / "run").exists()


# Row 5: a run whose numbers stop being finite (a learning rate of 1e30) stops with one line, exit 1, and never
# saves them: the DQN keeps its last periodic checkpoint (random play before TRAIN_START), the A2C has none.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")      # numpy's, acting on huge weights
@pytest.mark.parametrize("script", [DQN, A2C])
def test_a_diverging_run_exits_1_in_one_line_and_saves_no_nan(script, tmp_path, monkeypatch, capsys, dqn, a2c):
    module = chapter(script, dqn, a2c)
    for name in ("LEARNING_RATE", "ACTOR_LEARNING_RATE", "CRITIC_LEARNING_RATE"):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, 1e30)
    code = exit_code(module, "--episodes", 100, "--seed", 0, "--save-dir", tmp_path)
    weights = weights_path(script, tmp_path)
    kept = f"the last finite checkpoint is kept ({weights})" if script == DQN else "nothing was saved"
    assert code == f"error: training diverged (the loss is not a finite number): stopped; {kept} " \
                   "(try a smaller learning rate)"
    out = capsys.readouterr().out
    assert "interrupted" not in out and "weights: " not in out
    if script == DQN:
        played = len(printed_scores(out))
        assert facts_of(module, weights)["episode"] == played // 10 * 10 and all_finite(weights)
        new_agent(module).load(weights)
    else:
        assert not weights.exists() and not list((tmp_path / "save_graph").iterdir())
    assert not list(tmp_path.rglob(".tmp-*"))


# Row 5: weights that are not finite are never written, whatever asks for the save; the run stops as diverged.
def test_a_record_never_saves_nan_weights(tmp_path, dqn):
    stop = dqn.StopFlag()
    record = dqn.TrainingRecord(tmp_path, "cartpole_dqn", "CartPole DQN", None, 10)
    agent = new_agent(dqn)
    agent.model.set_weights([np.full_like(weights, np.inf) for weights in agent.model.get_weights()])
    assert record.save(agent, stop, final=True) is False
    assert stop.diverged == "the weights" and stop.requested
    assert not weights_path(DQN, tmp_path).exists()


# Row 6: values checked before anything is made: --save-dir "" or a symbolic-link loop (exit 2), a `summary` (or
# summary/<name>) that is a file, and a --load that is a FIFO (one line, exit 1, no hang).
@pytest.mark.parametrize("script", [DQN, A2C])
def test_bad_save_folders_and_a_fifo_are_refused_in_one_line(script, tmp_path, capsys, dqn, a2c):
    module = chapter(script, dqn, a2c)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for folder in ("", tmp_path / "loop" / "run"):
        with pytest.raises(SystemExit) as exit_info:
            module.parse_args(["--save-dir", str(folder)])
        assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("argument --save-dir:") == 2

    name = weights_path(script, tmp_path).name[:-11]
    for folder, blocker in (("a", "summary"), ("b", f"summary/{name}")):
        (tmp_path / folder / blocker).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / blocker).write_text("a file, not a folder")
        code = exit_code(module, "--episodes", 1, "--save-dir", tmp_path / folder)
        assert code.startswith(f"error: cannot write to {tmp_path / folder / 'summary' / name}: ")
        assert not list((tmp_path / folder).rglob("*.h5")) and "\n" not in code
    assert "episode:" not in capsys.readouterr().out

    fifo = tmp_path / "weights.fifo"
    os.mkfifo(fifo)
    for arguments in (["--play"], ["--save-dir", tmp_path / "run"]):
        code = exit_code(module, *arguments, "--load", fifo, "--episodes", 1)
        assert code.startswith(f"error: cannot load weights from {fifo} (not a regular file)") and "\n" not in code
    assert not (tmp_path / "run").exists()
