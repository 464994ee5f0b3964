"""Breakout A3C: the update rule against hand-computed numbers, thread-safe global updates, and smoke runs of
breakout_a3c.py and play_a3c_model.py (training writes weights and summaries; the play script loads them)."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import ROOT, load_module, run_script

TRAIN = "3-atari/2-breakout-a3c/breakout_a3c.py"
PLAY = "3-atari/2-breakout-a3c/play_a3c_model.py"


@pytest.fixture(scope="module")
def a3c():
    return load_module(TRAIN)


def test_k_step_returns_after_a_lost_life_start_from_zero(a3c):
    returns = a3c.discount_rewards(np.array([1.0, 0.0, 1.0]), done=True, next_value=5.0, gamma=0.99)
    # R2 = 1;  R1 = 0 + 0.99·1 = 0.99;  R0 = 1 + 0.99·0.99 = 1.9801  (next_value ignored at a terminal)
    np.testing.assert_allclose(returns, [1.9801, 0.99, 1.0], rtol=1e-6)


def test_k_step_returns_bootstrap_from_the_next_state(a3c):
    returns = a3c.discount_rewards(np.array([1.0, 0.0, 1.0]), done=False, next_value=2.0, gamma=0.99)
    # R2 = 1 + 0.99·2 = 2.98;  R1 = 0.99·2.98 = 2.9502;  R0 = 1 + 0.99·2.9502 = 3.920698
    np.testing.assert_allclose(returns, [3.920698, 2.9502, 2.98], rtol=1e-6)


def test_losses_and_advantages_match_hand_computed_numbers(a3c):
    policy = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]], dtype=np.float32)
    value = np.array([1.0, 0.5], dtype=np.float32)
    actions = np.array([0, 1], dtype=np.int32)
    returns = np.array([2.0, 0.0], dtype=np.float32)
    policy_loss, value_loss, entropy, advantages = a3c.a3c_losses(policy, value, actions, returns, 0.01)
    # A = R − V = [1, −0.5].  H = [1.039721, 0.639032] (nats).
    # per step: −log π(a|s)·A − 0.01·H = [0.693147 − 0.010397, −0.111572 − 0.006390] = [0.682750, −0.117962]
    np.testing.assert_allclose(np.asarray(advantages), [1.0, -0.5], rtol=1e-6)
    np.testing.assert_allclose(float(entropy), (1.039721 + 0.639032) / 2, rtol=1e-5)
    np.testing.assert_allclose(float(policy_loss), (0.682750 - 0.117962) / 2, rtol=1e-5)
    np.testing.assert_allclose(float(value_loss), (1.0 + 0.25) / 2, rtol=1e-6)


def test_entropy_bonus_pushes_towards_a_uniform_policy(a3c):
    import tensorflow as tf
    logits = tf.Variable([[3.0, 0.0, -1.0]])
    value = tf.constant([0.7])
    returns = tf.constant([0.7])                  # advantage 0: only the entropy term is left
    with tf.GradientTape() as tape:
        policy = tf.nn.softmax(logits)
        policy_loss, _, entropy_before, _ = a3c.a3c_losses(policy, value, tf.constant([0]), returns, 0.01)
    assert float(policy_loss) == pytest.approx(-0.01 * float(entropy_before), rel=1e-5)  # −β·H, a bonus
    logits.assign_sub(10.0 * tape.gradient(policy_loss, logits))   # one gradient-descent step on the loss
    entropy_after = -tf.reduce_sum(tf.nn.softmax(logits) * tf.math.log(tf.nn.softmax(logits)))
    assert float(entropy_after) > float(entropy_before)


def test_pre_processing_takes_the_max_of_two_frames(a3c):
    first = np.zeros((210, 160), dtype=np.uint8)
    second = np.zeros((210, 160), dtype=np.uint8)
    first[:, :80], second[:, 80:] = 200, 100
    frame = a3c.pre_processing(second, first)
    assert frame.shape == (84, 84) and frame.dtype == np.uint8
    assert frame[:, :40].min() == 200 and frame[:, 44:].min() == 100


def test_two_threads_update_the_global_network_exactly_once_per_rollout(a3c, tmp_path):
    agent = a3c.A3CAgent(threads=2, t_max=5, save_dir=tmp_path, seed=0, verbose=False)
    workers = [a3c.Agent(agent, index) for index in range(2)]
    before = [w.numpy().copy() for w in agent.model.weights]
    iterations_before = int(agent.optimizer.iterations.numpy())
    updates_per_thread, rollout = 6, 5
    start = threading.Barrier(2)

    def learn(worker):
        rng = np.random.default_rng(worker.index)
        start.wait()
        for _ in range(updates_per_thread):
            for _ in range(rollout):
                history = rng.integers(0, 255, (1, 84, 84, 4), dtype=np.uint8)
                worker.append_sample(history, int(rng.integers(3)), float(rng.choice([0.0, 1.0])))
            worker.train_model(history, done=False)

    threads = [threading.Thread(target=learn, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert int(agent.optimizer.iterations.numpy()) - iterations_before == 2 * updates_per_thread
    assert agent.updates == 2 * updates_per_thread
    assert agent.total_steps == 2 * updates_per_thread * rollout
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, agent.model.weights))
    # The thread that updated last copied the global weights into its local network.
    globals_now = [w.numpy() for w in agent.model.weights]
    assert any(all(np.array_equal(g, l.numpy()) for g, l in zip(globals_now, w.local_model.weights))
               for w in workers)


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_turns_are_handed_on_first_come_first_served(a3c):
    # A thread that passes its turn on while others wait must queue up behind them (a plain Semaphore lets it
    # take the slot straight back, and the waiting threads starve).
    turns, order = a3c.Turns(1), []
    turns.acquire()

    def play(name):
        with turns:
            order.append(name)

    first = threading.Thread(target=play, args=("first",))
    first.start()
    wait_until(lambda: len(turns.waiting) == 1)
    second = threading.Thread(target=play, args=("second",))
    second.start()
    wait_until(lambda: len(turns.waiting) == 2)
    turns.pass_on()                  # back only after both waiting threads had their turn
    order.append("passer")
    turns.release()
    for thread in (first, second):
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert order == ["first", "second", "passer"]
    assert turns.free == 1 and not turns.waiting


def test_turns_never_let_more_threads_play_than_slots(a3c):
    turns, lock = a3c.Turns(2), threading.Lock()
    playing, most, turns_taken = [0], [0], []

    def play():
        turns.acquire()
        try:
            for _ in range(200):
                with lock:
                    playing[0] += 1
                    most[0] = max(most[0], playing[0])
                np.linalg.svd(np.ones((20, 20)))  # a little work that releases the interpreter lock
                with lock:
                    playing[0] -= 1
                turns_taken.append(1)
                turns.pass_on()
        finally:
            turns.release()

    threads = [threading.Thread(target=play) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert most[0] <= 2
    assert len(turns_taken) == 6 * 200
    assert turns.free == 2 and not turns.waiting


def test_more_threads_than_cores_all_take_part(a3c, tmp_path):
    agent = a3c.A3CAgent(threads=4, active_threads=2, t_max=5, save_dir=tmp_path, seed=0, verbose=False)
    assert agent.turns.free == 2
    agent.train(max_steps=300, save_every=float("inf"), summaries=False)
    rollouts = [worker.rollouts for worker in agent.workers]
    assert all(count > 0 for count in rollouts), rollouts
    assert sum(rollouts) == agent.updates
    assert agent.turns.free == 2 and not agent.turns.waiting   # every turn was given back
    assert a3c.A3CAgent(threads=1, save_dir=tmp_path, verbose=False).active_threads == 1


def test_a_failing_worker_stops_the_waiting_ones_too(a3c, tmp_path, monkeypatch):
    # One thread plays at a time and the first update raises: the others, still waiting for a turn, must wake,
    # see the stop and end, and train() must hand the error on instead of hanging.
    def broken_update(self, next_history, done):
        raise RuntimeError("broken update")
    monkeypatch.setattr(a3c.Agent, "train_model", broken_update)
    agent = a3c.A3CAgent(threads=4, active_threads=1, t_max=5, save_dir=tmp_path, seed=0, verbose=False)
    raised = []

    def run():
        try:
            agent.train(max_steps=10_000, save_every=float("inf"), summaries=False)
        except RuntimeError as error:
            raised.append(str(error))
    trainer = threading.Thread(target=run, daemon=True)
    trainer.start()
    trainer.join(timeout=120)
    assert not trainer.is_alive(), "train() hung"
    assert raised == ["broken update"]
    assert not any(worker.is_alive() for worker in agent.workers)
    assert agent.turns.free == 1 and not agent.turns.waiting
    with pytest.raises(ValueError):
        a3c.A3CAgent(threads=2, active_threads=0, save_dir=tmp_path, verbose=False)


def test_short_threaded_run_writes_weights_and_summaries_that_the_play_script_plays(tmp_path):
    result = run_script(TRAIN, "--threads", 2, "--max-steps", 400, "--save-dir", tmp_path, "--seed", 0,
                        timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    weights = tmp_path / "save_model" / "breakout_a3c.weights.h5"
    assert weights.is_file()
    assert list((tmp_path / "summary" / "breakout_a3c").glob("events.out.tfevents.*"))
    assert "steps/s" in result.stdout
    assert not list(tmp_path.rglob(".tmp-*"))

    played = run_script(PLAY, "--load", weights, "--episodes", 1, "--no-render", "--max-episode-steps", 300,
                        "--seed", 0, timeout=120)
    assert played.returncode == 0, played.stderr[-2000:]
    assert "episode: 1 | score:" in played.stdout
    assert "over 1 episodes" in played.stdout.strip().splitlines()[-1]


def test_ctrl_c_stops_every_thread_and_saves(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    child = subprocess.Popen([sys.executable, str(ROOT / TRAIN), "--threads", "3", "--save-dir", str(tmp_path)],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in child.stdout:                  # Ctrl-C once the threads are playing
            if line.startswith("episode: 1 "):
                child.send_signal(signal.SIGINT)
                break
        rest = child.communicate(timeout=120)[0]
    finally:
        child.kill()
    assert child.returncode == 130
    assert "weights saved to" in rest
    assert (tmp_path / "save_model" / "breakout_a3c.weights.h5").is_file()
    assert not list(tmp_path.rglob(".tmp-*"))


@pytest.mark.parametrize("script", [PLAY, TRAIN])
def test_bad_weights_give_one_line_and_exit_1(script, tmp_path):
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an h5 file")
    result = run_script(script, "--load", bad, "--save-dir", tmp_path, timeout=120) if script == TRAIN \
        else run_script(script, "--load", bad, "--episodes", 1, timeout=120)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.weights.h5" in errors[0]
    assert "Traceback" not in result.stderr


def test_help_and_bad_arguments():
    for script in (TRAIN, PLAY):
        shown = run_script(script, "--help", timeout=120)
        assert shown.returncode == 0 and "--episodes" in shown.stdout
        assert run_script(script, "--no-such-flag", timeout=120).returncode == 2
    assert "--t-max" in run_script(TRAIN, "--help", timeout=120).stdout
    assert run_script(TRAIN, "--threads", 0, timeout=120).returncode == 2


def test_the_shipped_agent_plays_far_better_than_random():
    # Random play scores about 1.7 a game; the shipped weights about 30. 3 seeded games keep it quick.
    result = run_script(PLAY, "--episodes", 3, "--no-render", "--seed", 1, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    mean = float(result.stdout.strip().splitlines()[-1].split("mean score: ")[1].split()[0])
    assert mean >= 15, result.stdout
