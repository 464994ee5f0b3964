"""Breakout DQN (3-atari/1-breakout-dqn): preprocessing, histories, the frame-once replay memory, the
Huber target, and the scripts end to end (train a few steps, resume, play, bad input)."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, load_module, run_script

SCRIPT = "3-atari/1-breakout-dqn/breakout_dqn.py"
PLAY = "3-atari/1-breakout-dqn/play_dqn_model.py"


@pytest.fixture(scope="module")
def dqn():
    return load_module(SCRIPT)


def frame(number):
    """A blank frame that carries its number in two pixels (so 65,536 frames stay distinct)."""
    image = np.zeros((84, 84), np.uint8)
    image[0, 0], image[0, 1] = number % 256, number // 256
    return image


def ids(stack):
    return tuple(int(plane[0, 0]) + 256 * int(plane[0, 1]) for plane in stack)


def test_pre_processing_of_a_real_frame(dqn):
    env = dqn.make_env()
    observe, _ = dqn.start_game(env, seed=0)
    env.close()
    assert observe.shape == (210, 160, 3)
    state = dqn.pre_processing(observe)
    assert state.shape == (84, 84) and state.dtype == np.uint8
    assert state.min() < 50 and state.max() > 100       # a dark screen with bright bricks and walls


def test_history_keeps_the_newest_frame_first_and_restarts_after_a_lost_life(dqn):
    history = dqn.new_history(frame(1))
    assert history.shape == (4, 84, 84) and history.dtype == np.uint8
    for number in (2, 3, 4, 5):
        history = dqn.next_history_of(history, frame(number))
    assert ids(history) == (5, 4, 3, 2)
    assert ids(dqn.new_history(frame(9))) == (9, 9, 9, 9)     # after a lost life: nothing of the old one


def test_history_in_memory_restarts_after_a_lost_life(dqn):
    memory = dqn.ReplayMemory(100)
    memory.start_history(frame(1))
    for number in (2, 3):
        memory.append(1, 0.0, frame(number), False)
    memory.append(1, 0.0, frame(4), True)                    # life lost on frame 4
    memory.append(0, 0.0, frame(5), False)                   # FIRE in the new life
    assert ids(memory.stacks(np.array([2]))[0]) == (3, 2, 1, 1)   # newest first, game start repeated
    assert ids(memory.stacks(np.array([3]))[0]) == (4, 4, 4, 4)   # the new life starts from frame 4
    assert ids(memory.stacks(np.array([4]))[0]) == (5, 4, 4, 4)   # and never reaches into the old life


def play_fake_games(dqn, memory, steps, seed=0):
    """Feed the memory as the training loop does, with numbered frames and random lost lives and game
    overs. Returns ({ids of state: (state, next state, dead)}, {frame number: its lives}, last number)."""
    rng = np.random.default_rng(seed)
    transitions, life_of, number, life, history = {}, {}, 0, 0, None
    for _ in range(steps):
        number += 1
        if history is None:                                  # a new game: its first frame, no transition
            life += 1
            life_of[number] = {life}
            memory.start_history(frame(number))
            history = dqn.new_history(frame(number))
            continue
        dead = bool(rng.random() < 0.08)
        life_of[number] = {life}
        memory.append(int(rng.integers(3)), float(rng.integers(2)), frame(number), dead)
        after = dqn.next_history_of(history, frame(number))
        transitions[ids(history)] = (history, after, dead)
        if dead and rng.random() < 0.3:                      # game over
            history = None
        elif dead:                                           # the next life starts from this frame
            life += 1
            life_of[number] = {life - 1, life}               # ends one life, starts the next
            history = dqn.new_history(frame(number))
        else:
            history = after
    return transitions, life_of, number


def test_replay_stacks_equal_the_agents_histories_across_lives_and_games(dqn):
    memory = dqn.ReplayMemory(5000)
    transitions, _, _ = play_fake_games(dqn, memory, 3000)
    states, actions, rewards, next_states, deads = memory.sample(500)
    assert states.shape == next_states.shape == (500, 4, 84, 84) and states.dtype == np.uint8
    for state, next_state, dead in zip(states, next_states, deads):
        history, after, was_dead = transitions[ids(state)]   # KeyError: a stack the agent never saw
        assert np.array_equal(state, history) and dead == was_dead
        if not dead:                                         # after a lost life s' is never bootstrapped
            assert np.array_equal(next_state, after)
    assert any(len(set(ids(state))) == 1 for state in states)   # first states of lives: one frame 4 times


def test_replay_memory_wraps_around_and_never_mixes_lives(dqn):
    memory = dqn.ReplayMemory(300)
    transitions, life_of, last = play_fake_games(dqn, memory, 1000, seed=1)
    assert len(memory) == 300 and memory.frames.shape == (300, 84, 84)
    assert ids([memory.frames[(memory.cursor - 1) % 300]]) == (last,)       # the ring wrapped around
    oldest_kept = last - 300 + 1
    for _ in range(20):
        states, _, _, next_states, deads = memory.sample(32)
        for state, next_state, dead in zip(states, next_states, deads):
            assert min(ids(state)) >= oldest_kept, "a stack used an overwritten frame"
            assert set.intersection(*(life_of[n] for n in ids(state))), "a stack mixed two lives"
            assert np.array_equal(state, transitions[ids(state)][0])
            if not dead:
                assert set.intersection(*(life_of[n] for n in ids(next_state)))


def test_replay_memory_stores_each_frame_once(dqn):
    memory = dqn.ReplayMemory(400_000)
    per_slot = sum(a.nbytes for a in (memory.frames, memory.actions, memory.rewards, memory.deads,
                                      memory.starts, memory.valid)) / memory.size
    assert 84 * 84 <= per_slot <= 84 * 84 + 16                 # one frame plus a few bytes per transition


def test_targets_and_huber_loss_by_hand(dqn):
    import tensorflow as tf
    rewards = tf.constant([1.0, 1.0, 0.0])
    deads = tf.constant([0.0, 1.0, 0.0])
    next_q = tf.constant([[0.5, 2.0, 1.0], [5.0, 5.0, 5.0], [-1.0, -3.0, -2.0]])
    targets = dqn.dqn_targets(rewards, deads, next_q, 0.99).numpy()
    np.testing.assert_allclose(targets, [1.0 + 0.99 * 2.0, 1.0, 0.99 * -1.0], rtol=1e-6)
    # |error| 0.5 -> 0.5 * 0.25; |error| 3 -> 3 - 0.5; mean over the batch
    loss = dqn.huber_loss(tf.constant([1.0, 0.0]), tf.constant([0.5, 3.0])).numpy()
    assert loss == pytest.approx((0.125 + 2.5) / 2)


def test_train_step_loss_uses_the_target_network_and_moves_the_weights(dqn):
    import tensorflow as tf
    agent = dqn.DQNAgent(memory_size=64)
    rng = np.random.default_rng(0)
    states = rng.integers(0, 255, (4, 4, 84, 84), dtype=np.uint8)
    next_states = rng.integers(0, 255, (4, 4, 84, 84), dtype=np.uint8)
    actions = np.array([0, 1, 2, 1], np.int32)
    rewards = np.array([1.0, 0.0, -1.0, 0.0], np.float32)
    deads = np.array([0.0, 1.0, 0.0, 0.0], np.float32)
    q = agent.model(dqn.to_network_input(states)).numpy()[np.arange(4), actions]
    next_q = agent.target_model(dqn.to_network_input(next_states)).numpy().max(axis=1)
    targets = rewards + 0.99 * (1 - deads) * next_q
    error = np.abs(targets - q)
    expected = np.mean(np.where(error <= 1, 0.5 * error ** 2, error - 0.5))
    before = agent.model.get_weights()[-1].copy()
    loss = float(agent.train_step(states, actions, rewards, next_states, deads))
    assert loss == pytest.approx(expected, rel=1e-4)
    assert not np.array_equal(before, agent.model.get_weights()[-1])
    action, max_q = agent.greedy(tf.constant(states[0]))
    assert max_q.numpy() == pytest.approx(agent.model(dqn.to_network_input(states[:1])).numpy().max(), rel=1e-5)


def test_train_resume_and_play_end_to_end(tmp_path):
    result = run_script(SCRIPT, "--max-steps", 1200, "--train-start", 600, "--memory-size", 2000,
                        "--target-update", 500, "--seed", 0, "--save-dir", tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("episode:")]
    assert lines and all("avg max Q:" in line and "avg loss:" in line and "global step:" in line
                         for line in lines)
    weights = tmp_path / "save_model" / "breakout_dqn.weights.h5"
    saved = json.loads((tmp_path / "save_model" / "breakout_dqn.json").read_text())
    assert weights.exists() and (tmp_path / "save_graph" / "breakout_dqn.png").exists()
    assert saved["global_step"] == 1200 and saved["epsilon"] < 1.0
    events = list((tmp_path / "summary" / "breakout_dqn").glob("events.out.tfevents.*"))
    assert events and b"Total Reward/Episode" in events[0].read_bytes()
    assert b"Average Loss/Episode" in events[0].read_bytes()
    assert not list(tmp_path.rglob(".tmp-*"))

    # --render with no display (run_script gives none): a note, then headless, never SDL's segfault.
    resumed = run_script(SCRIPT, "--load", weights, "--max-steps", 1300, "--train-start", 50,
                         "--memory-size", 500, "--save-dir", tmp_path, "--render", timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.startswith("no display found: running headless")
    assert "resuming at step 1200" in resumed.stdout
    assert json.loads((tmp_path / "save_model" / "breakout_dqn.json").read_text())["global_step"] == 1300

    played = run_script(PLAY, "--load", weights, "--episodes", 1, "--max-episode-steps", 200, "--seed", 0,
                        "--render")
    assert played.returncode == 0, played.stderr[-2000:]
    assert played.stdout.startswith("no display found: running headless")
    assert "episode: 1 | score:" in played.stdout
    assert "mean score:" in played.stdout.splitlines()[-1]


def test_ctrl_c_saves_and_exits_130(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    process = subprocess.Popen([sys.executable, str(ROOT / SCRIPT), "--memory-size", "1000",
                                "--train-start", "100", "--save-dir", str(tmp_path), "--seed", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=tmp_path)
    try:
        for line in process.stdout:                          # wait for the first finished episode
            if line.startswith("episode: 1 |"):
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err[-2000:]
    assert "interrupted at step" in out
    assert (tmp_path / "save_model" / "breakout_dqn.weights.h5").exists()
    assert (tmp_path / "save_model" / "breakout_dqn.json").exists()


@pytest.mark.parametrize("script", [SCRIPT, PLAY])
def test_bad_weights_give_one_line_and_exit_1(tmp_path, script):
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an HDF5 file")
    extra = ["--max-steps", 1, "--save-dir", tmp_path] if script == SCRIPT else ["--episodes", 1]
    result = run_script(script, "--load", bad, *extra)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot load weights from {bad}") and "breakout_dqn.py" in last


def test_help_unknown_flag_and_unwritable_save_dir(tmp_path):
    shown = {script: run_script(script, "--help") for script in (SCRIPT, PLAY)}
    assert all(result.returncode == 0 and "--episodes" in result.stdout for result in shown.values())
    for flag in ("--train-freq", "--target-update", "--memory-size", "--train-start", "--max-steps", "--load"):
        assert flag in shown[SCRIPT].stdout
    assert run_script(SCRIPT, "--no-such-flag").returncode == 2
    blocked = tmp_path / "file"
    blocked.write_text("a file, not a folder")
    result = run_script(SCRIPT, "--save-dir", blocked, "--max-steps", 1)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: cannot write to")


def test_weights_of_another_network_say_what_does_not_fit():
    other = ROOT / "3-atari" / "2-breakout-a3c" / "save_model" / "breakout_a3c_trained.weights.h5"
    result = run_script(PLAY, "--load", other, "--episodes", 1)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot load weights from {other}")
    # Keras's reason is on its second line; the first one alone ends in "for object <Conv2D ...>:".
    assert "variable.shape=(8, 8, 4, 32), Received: value.shape=(8, 8, 4, 16)" in last
    assert "Target variable" not in last and len(last) < 400


def test_the_shipped_agent_plays_far_better_than_random():
    # Random play scores about 1.7 a game; the shipped weights over 100. 3 seeded games keep it quick.
    result = run_script(PLAY, "--episodes", 3, "--no-render", "--seed", 1, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    mean = float(result.stdout.strip().splitlines()[-1].split("mean score: ")[1].split()[0])
    assert mean >= 20, result.stdout
