"""Breakout A3C: the update rule against hand-computed numbers, thread-safe global updates, and smoke runs of
breakout_a3c.py and play_a3c_model.py (training writes weights and summaries; the play script loads them)."""
import errno
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
from conftest import interrupt_script, load_module, printed_mean, printed_scores, run_script

TRAIN = "3-atari/2-breakout-a3c/breakout_a3c.py"
PLAY = "3-atari/2-breakout-a3c/play_a3c_model.py"
ENVIRONMENT = "3-atari/2-breakout-a3c/environment.py"
TURNS = "3-atari/2-breakout-a3c/turns.py"
CHECKPOINT = "3-atari/2-breakout-a3c/a3c_checkpoint.py"


@pytest.fixture(scope="module")
def a3c():
    return load_module(TRAIN)


def test_k_step_returns_after_a_lost_life_start_from_zero(a3c):
    returns = a3c.discount_rewards(np.array([[1.0], [0.0], [1.0]]), np.array([[False], [False], [True]]),
                                   next_values=np.array([5.0]), gamma=0.99)
    # R2 = 1;  R1 = 0 + 0.99·1 = 0.99;  R0 = 1 + 0.99·0.99 = 1.9801  (next_value ignored at a terminal)
    np.testing.assert_allclose(returns[:, 0], [1.9801, 0.99, 1.0], rtol=1e-6)


def test_k_step_returns_bootstrap_from_the_next_state(a3c):
    returns = a3c.discount_rewards(np.array([[1.0], [0.0], [1.0]]), np.zeros((3, 1), bool),
                                   next_values=np.array([2.0]), gamma=0.99)
    # R2 = 1 + 0.99·2 = 2.98;  R1 = 0.99·2.98 = 2.9502;  R0 = 1 + 0.99·2.9502 = 3.920698
    np.testing.assert_allclose(returns[:, 0], [3.920698, 2.9502, 2.98], rtol=1e-6)


def test_k_step_returns_keep_each_game_to_itself(a3c):
    # Three games, one rollout of 4 steps. Game 0 loses a life at step 1 (its steps 2-3 belong to its next
    # life, bootstrapped); game 1 ends at step 3 (no bootstrap); game 2 plays on (bootstrap from its V).
    rewards = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    dones = np.zeros((4, 3), bool)
    dones[1, 0] = dones[3, 1] = True
    next_values = np.array([10.0, 20.0, 30.0])
    returns = a3c.discount_rewards(rewards, dones, next_values, gamma=0.5)
    np.testing.assert_allclose(returns[:, 0], [1.0, 0.0, 1 + 0.5 * 5.0, 5.0])       # R3 = 0 + 0.5·10
    np.testing.assert_allclose(returns[:, 1], [0.625, 1.25, 0.5, 1.0])              # 20 never used
    np.testing.assert_allclose(returns[:, 2], [2.0, 4.0, 8.0, 16.0])                # R3 = 1 + 0.5·30
    for game in range(3):                   # the same numbers as each game alone
        alone = a3c.discount_rewards(rewards[:, [game]], dones[:, [game]], next_values[[game]], gamma=0.5)
        np.testing.assert_allclose(alone[:, 0], returns[:, game])


def test_batched_losses_are_the_mean_of_each_games_losses(a3c):
    # The fast path's one update over t_max × N samples equals the average of N single-game updates.
    rng = np.random.default_rng(0)
    t_max, games = 5, 4
    policy = rng.dirichlet(np.ones(3), size=(t_max, games)).astype(np.float32)
    value = rng.normal(size=(t_max, games)).astype(np.float32)
    actions = rng.integers(0, 3, (t_max, games)).astype(np.int32)
    returns = rng.normal(size=(t_max, games)).astype(np.float32)
    batched = a3c.a3c_losses(policy.reshape(-1, 3), value.reshape(-1), actions.reshape(-1), returns.reshape(-1))
    alone = [a3c.a3c_losses(policy[:, g], value[:, g], actions[:, g], returns[:, g]) for g in range(games)]
    for k in range(3):                      # policy loss, value loss, entropy
        assert float(batched[k]) == pytest.approx(np.mean([float(a[k]) for a in alone]), rel=1e-5)


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


def test_pre_processing_takes_the_max_of_two_frames():
    environment = load_module(ENVIRONMENT)
    first = np.zeros((210, 160), dtype=np.uint8)
    second = np.zeros((210, 160), dtype=np.uint8)
    first[:, :80], second[:, 80:] = 200, 100
    frame = environment.pre_processing(second, first)
    assert frame.shape == (84, 84) and frame.dtype == np.uint8
    assert frame[:, :40].min() == 200 and frame[:, 44:].min() == 100


def test_two_threads_update_the_global_network_exactly_once_per_rollout(a3c, tmp_path):
    games = 3                                   # each thread learns from rollouts of 5 steps × 3 games
    agent = a3c.A3CAgent(threads=2, t_max=5, envs_per_thread=games, save_dir=tmp_path, seed=0, verbose=False)
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
                states = rng.integers(0, 255, (games, 84, 84, 4), dtype=np.uint8)
                worker.append_sample(states, rng.integers(3, size=games), rng.choice([0.0, 1.0], size=games),
                                     rng.random(games) < 0.1)
            worker.train_model(states)

    threads = [threading.Thread(target=learn, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert int(agent.optimizer.iterations.numpy()) - iterations_before == 2 * updates_per_thread
    assert agent.updates == 2 * updates_per_thread
    assert agent.total_steps == 2 * updates_per_thread * rollout * games
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, agent.model.weights))
    # The thread that updated last copied the global weights into its local network.
    globals_now = [w.numpy() for w in agent.model.weights]
    assert any(all(np.array_equal(g, l.numpy()) for g, l in zip(globals_now, w.local_model.weights))
               for w in workers)


def test_vector_games_keep_lives_scores_and_histories_to_themselves():
    # The real vector environment, 2 games with random actions: a lost life is `dead` in that game only; a
    # game over is reported with that game's own raw score, and resets that game's history only.
    games = load_module(ENVIRONMENT).VectorBreakout(2, seed=0)
    states = games.reset()
    assert states.shape == (2, 84, 84, 4) and states.dtype == np.uint8
    rng = np.random.default_rng(0)
    sums, lone_deaths, game_overs = np.zeros(2), 0, 0
    for _ in range(3000):
        lives_before = games.lives.copy()
        next_states, rewards, dead, finished = games.step(rng.integers(0, 3, 2))
        sums += rewards
        ended = [game for game, _, _ in finished]
        for game in range(2):
            if game in ended:
                assert dead[game]                       # no bootstrap across a game over
                assert not next_states[game, :, :, :3].any() and next_states[game, :, :, 3].any()
            else:                                       # the history moved on by one frame
                np.testing.assert_array_equal(next_states[game, :, :, :3], states[game, :, :, 1:])
            if dead[game] and game not in ended:
                assert games.lives[game] == lives_before[game] - 1
        if dead[0] != dead[1] and not finished:
            lone_deaths += 1
            other = 1 - int(np.argmax(dead))
            assert games.lives[other] == lives_before[other]
        for game, score, duration in finished:
            assert score == sums[game] and duration > 0
            sums[game] = 0.0
            game_overs += 1
        states = next_states
        if game_overs >= 3 and lone_deaths >= 3:
            break
    games.close()
    assert game_overs >= 3 and lone_deaths >= 3


def test_book_game_presses_fire_after_a_lost_life_and_restarts_the_history():
    games = load_module(ENVIRONMENT).BookBreakout(seed=0)
    states = games.reset()
    rng = np.random.default_rng(0)
    for _ in range(2000):
        next_states, _, dead, finished = games.step(rng.integers(0, 3, 1))
        if dead[0] and not finished:           # a fresh history: four copies of the frame after FIRE
            frame = next_states[0, :, :, 3]
            assert all(np.array_equal(next_states[0, :, :, i], frame) for i in range(3))
            break
        np.testing.assert_array_equal(next_states[0, :, :, :3], states[0, :, :, 1:])   # otherwise it moves on
        states = next_states
    else:
        pytest.fail("no life lost in 2000 random steps")
    games.close()


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_turns_are_handed_on_first_come_first_served():
    # A thread that passes its turn on while others wait must queue up behind them (a plain Semaphore lets it
    # take the slot straight back, and the waiting threads starve).
    turns, order = load_module(TURNS).Turns(1), []
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


def test_turns_never_let_more_threads_play_than_slots():
    turns, lock = load_module(TURNS).Turns(2), threading.Lock()
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


def test_turns_let_exactly_slots_threads_play_at_once():
    """Turns(2): two threads get a turn at once, the third waits until one gives its turn back (a Turns that let only
    one thread play, or all of them, fails here; no sleeps: each wait ends as soon as the thing waited for happens)."""
    turns = load_module(TURNS).Turns(2)

    def taking_a_turn():
        thread = threading.Thread(target=turns.acquire, daemon=True)
        thread.start()
        return thread
    first, second = taking_a_turn(), taking_a_turn()
    for holder in (first, second):
        holder.join(timeout=10)
        assert not holder.is_alive(), "a second thread could not play beside the first"
    third = taking_a_turn()
    for _ in range(2000):                                      # until the third stands in the queue (10 s at most)
        if turns.waiting or not third.is_alive():
            break
        third.join(timeout=0.005)
    assert third.is_alive(), "a third thread got a turn while two were playing"
    assert len(turns.waiting) == 1
    turns.release()                                            # one of the two gives its turn back
    third.join(timeout=10)
    assert not third.is_alive() and turns.free == 0 and not turns.waiting


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
    def broken_update(self, next_states):
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


@pytest.mark.parametrize("signum, second", [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True),
                                            (signal.SIGHUP, False)],
                         ids=["ctrl-c", "sigterm", "second-ctrl-c-during-the-save", "closed-terminal"])
def test_a_stop_signal_stops_every_thread_and_saves_weights_that_load(signum, second, tmp_path):
    result = interrupt_script(TRAIN, "--threads", 3, "--save-dir", tmp_path, signum=signum,
                              second_signal_during_save=second, timeout=180)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert ("second SIGINT sent during the save" in result.stdout) == second
    assert "weights saved to" in result.stdout and "graph saved to" in result.stdout
    weights = tmp_path / "save_model" / "breakout_a3c.weights.h5"
    assert (tmp_path / "save_graph" / "breakout_a3c.png").is_file()
    assert not list(tmp_path.rglob(".tmp-*"))
    played = run_script(PLAY, "--load", weights, "--episodes", 1, "--max-episode-steps", 50, timeout=120)
    assert played.returncode == 0, played.stderr[-2000:]


def test_a_signal_before_training_starts_exits_130_in_one_line(tmp_path):
    # The line names the run's shape just before the 8 workers' networks are built (seconds): stop then.
    result = interrupt_script(TRAIN, "--threads", 8, "--save-dir", tmp_path, when=lambda line: "threads ×" in line,
                              timeout=180)
    assert result.returncode == 130
    assert "interrupted before training started" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "save_model" / "breakout_a3c.weights.h5").exists()


def test_fast_run_trains_in_the_vector_environment_and_is_played_with_its_preprocessing(tmp_path):
    result = run_script(TRAIN, "--fast", "--threads", 1, "--envs-per-thread", 4, "--max-steps", 800,
                        "--save-dir", tmp_path, "--seed", 0, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 threads × 4 games (ale-vector preprocessing), t_max 5" in result.stdout
    weights = tmp_path / "save_model" / "breakout_a3c.weights.h5"
    facts = load_module(CHECKPOINT).weights_facts(weights)
    assert facts["preprocessing"] == "ale-vector" and facts["total_steps"] >= 800
    curve = (tmp_path / "save_graph" / "breakout_a3c.csv").read_text().splitlines()
    assert curve[0] == "episode,total_steps,score,duration,thread,seconds"
    played = run_script(PLAY, "--load", weights, "--episodes", 1, "--max-episode-steps", 200, "--seed", 0,
                        timeout=120)
    assert played.returncode == 0, played.stderr[-2000:]
    assert "with the ale-vector preprocessing" in played.stdout
    assert "over 1 episodes" in played.stdout.strip().splitlines()[-1]
    # Continuing it with the book's single game would change its inputs: one line, exit 1.
    wrong = run_script(TRAIN, "--load", weights, "--save-dir", tmp_path, "--max-steps", 10, timeout=120)
    assert wrong.returncode == 1 and "ale-vector preprocessing" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_the_book_weights_are_played_with_the_book_preprocessing(tmp_path):
    model, checkpoint = load_module(TRAIN).build_model(), load_module(CHECKPOINT)
    old = tmp_path / "old.weights.h5"
    model.save_weights(old)                        # a file from before the preprocessing was recorded
    assert checkpoint.weights_facts(old)["preprocessing"] == "book"
    checkpoint.save_weights(model, tmp_path / "new.weights.h5", preprocessing="ale-vector", total_steps=5)
    assert checkpoint.weights_facts(tmp_path / "new.weights.h5")["preprocessing"] == "ale-vector"
    model.load_weights(tmp_path / "new.weights.h5")                # still a plain Keras weights file


def test_a_resumed_run_goes_on_with_the_curve_of_the_games_its_weights_have_seen(tmp_path):
    # A kill between saving the curve and the weights leaves games in the CSV that the weights never saw: dropped.
    checkpoint = load_module(CHECKPOINT)
    log = checkpoint.RunLog(tmp_path, "breakout_a3c", verbose=False)
    log.log_path.parent.mkdir(parents=True)
    rows = [(episode, 100 * episode, float(episode), 50, 0, 1.5 * episode) for episode in range(1, 6)]
    checkpoint.write_curve(log.log_path, rows)
    total_steps = log.continue_curve({"preprocessing": "book", "episodes": 3, "total_steps": 320, "seconds": 4.0})
    assert log.scores == rows[:3] and log.episode == 3
    assert total_steps == 320 and log.seconds_before == 4.0
    # The weights were saved, the curve after them was not (a save that failed): the curve lags, the count goes on.
    assert log.continue_curve({"preprocessing": "book", "episodes": 7, "total_steps": 900, "seconds": 9.0}) == 900
    assert log.scores == rows and log.episode == 7 and log.seconds_before == 9.0
    # Weights from before the facts were stored: the curve's last row says where the run stopped.
    assert log.continue_curve({"preprocessing": "book"}) == 500
    assert log.scores == rows and log.episode == 5 and log.seconds_before == 7.5


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


def test_help_and_bad_arguments(capsys):
    shown = run_script(PLAY, "--help", timeout=120)                  # once as a reader runs it
    assert shown.returncode == 0 and "--episodes" in shown.stdout
    for script, bad in ((TRAIN, ["--no-such-flag"]), (TRAIN, ["--threads", "0"]), (PLAY, ["--no-such-flag"])):
        parse_args = load_module(script).parse_args
        with pytest.raises(SystemExit) as refused:
            parse_args(bad)
        assert refused.value.code == 2 and ": error: " in capsys.readouterr().err.splitlines()[-1]
    with pytest.raises(SystemExit):
        load_module(TRAIN).parse_args(["--help"])
    assert "--t-max" in capsys.readouterr().out


def test_the_shipped_agent_plays_far_better_than_random_with_its_own_preprocessing():
    # Random play scores about 1.7 a game; the shipped --fast agent about 260 (10 games). 3 seeded games keep it
    # quick; the bar is the chapter's goal of 100.
    result = run_script(PLAY, "--episodes", 3, "--no-render", "--seed", 1, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "with the ale-vector preprocessing it was trained with" in result.stdout
    mean = printed_mean(result.stdout)
    assert mean >= 100, result.stdout


def test_the_colour_screen_plays_the_very_same_game_as_the_agent(tk_display):
    # ALE's vector environment has no window: --render runs a second emulator, seeded alike and given the same
    # actions, in colour, in a real Tk window (Xvfb). Same lives and same game overs step by step: the same game.
    environment = load_module(ENVIRONMENT)
    games, rng = environment.VectorBreakout(1, seed=5), np.random.default_rng(0)
    games.reset()
    screen = environment.ColourScreen(5, fps=0)
    game_overs = 0
    for _ in range(1500):
        actions = rng.integers(0, 3, 1)
        _, _, _, finished = games.step(actions)
        screen.step(actions)
        game_overs += len(finished)
        assert games.lives[0] == screen.info["lives"][0]
        if finished:                              # the screen's game was reset in the same step, too
            assert screen.info["episode_frame_number"][0] < 200
    assert game_overs >= 3
    assert (screen.image.width(), screen.image.height()) == (480, 630)
    screen.close()
    games.close()


@pytest.mark.parametrize("preprocessing", ["book", "ale-vector"])
def test_a_stuck_game_is_ended_at_the_cap_and_counted_as_it_stands(preprocessing, capsys):
    # Watching: a game that goes on past max_episode_steps agent steps is counted with its score so far and a
    # new one starts; the colour frames (--record) go on through it, one a step (the vector games' screen also
    # shows each reset).
    frames = []
    game = load_module(ENVIRONMENT).WatchedBreakout(preprocessing, max_episode_steps=7, seed=0, frames=frames)
    game.reset()
    ended = []
    for step in range(1, 15):
        _, finished = game.step(np.array([1]))        # RIGHT: no game ends by itself within 14 steps
        ended += [(step, duration) for _, _, duration in finished]
    assert ended == [(7, 7), (14, 7)]
    assert capsys.readouterr().out.splitlines() == ["(game 1 stopped at the 7-step cap)",
                                                    "(game 2 stopped at the 7-step cap)"]
    assert len(frames) == (14 if preprocessing == "book" else 1 + 14 + 2)
    assert all(frame.shape == (210, 160, 3) for frame in frames)
    if game.screen is not None:                       # the colour screen was reset with the game: still in step
        assert game.screen.info["lives"][0] == game.games.lives[0]
    game.close()


def test_the_shipped_agent_can_be_watched_in_a_window(tk_display):
    result = run_script(PLAY, "--episodes", 1, "--render", "--max-episode-steps", 200, "--seed", 3, timeout=300,
                        display=tk_display)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no display" not in result.stdout and "mean score:" in result.stdout


def test_a_colour_window_that_cannot_open_means_headless_with_a_note(tmp_path):
    # DISPLAY names a screen where no X server answers: one line, the game is played (and recorded) all the same.
    result = run_script(PLAY, "--render", "--episodes", 1, "--max-episode-steps", 15, "--seed", 0,
                        "--record", tmp_path / "game.gif", display=":987", timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert 'cannot open a window (couldn\'t connect to display ":987"): running headless' in result.stdout
    assert len(printed_scores(result.stdout)) == 1 and (tmp_path / "game.gif").stat().st_size > 0


# ---- nothing a reader trained is ever lost (issue 20) ----
def checkpoint_of(a3c):
    """The a3c_checkpoint module that breakout_a3c.py itself uses (to monkeypatch what it calls)."""
    return sys.modules[a3c.save_checkpoint.__module__]


def play_games(agent, scores):
    """Count games as the threads would (no emulator needed): one row of the curve each, 100 steps apart."""
    for score in scores:
        agent.total_steps += 100
        agent.log.end_episode(0, score, 100, 0.5, agent.total_steps)


def only_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


class DivergingFlag:
    """A stop flag as plumbing.StopFlag behaves, without its signal handlers (this is pytest's process)."""
    requested, diverged = False, None

    def check_finite(self, value, what="the loss"):
        if not np.isfinite(value):
            self.requested, self.diverged = True, what


def test_a_full_disk_is_one_line_and_the_last_checkpoint_and_its_curve_stay(a3c, tmp_path, monkeypatch, capsys):
    agent = a3c.A3CAgent(threads=1, save_dir=tmp_path, verbose=False)
    agent.log.open()
    play_games(agent, [1.0, 2.0])
    assert agent.save_model() is True
    weights, curve = agent.log.model_path, agent.log.log_path
    saved_weights, saved_curve = weights.read_bytes(), curve.read_text()
    assert len(saved_curve.splitlines()) == 1 + 2
    play_games(agent, [3.0])
    capsys.readouterr()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(checkpoint_of(a3c), "save_weights", full_disk)
    assert agent.save_model() is False                      # a periodic save: one line, training goes on
    line = only_line(capsys.readouterr().out)
    assert line.startswith(f"could not save the weights in {weights.parent} (No space left on device)")
    # Weights first: the curve was not written either, so it never holds a game the weights on disk have not seen.
    assert weights.read_bytes() == saved_weights and curve.read_text() == saved_curve
    with pytest.raises(SystemExit) as final:                # the final save: one line, exit 1
        agent.save_model(final=True)
    assert str(final.value.code).startswith(f"error: could not save the weights in {weights.parent} (No space")
    assert weights.read_bytes() == saved_weights and curve.read_text() == saved_curve
    assert not list(tmp_path.rglob(".tmp-*"))
    monkeypatch.undo()
    # The curve failing after the weights were saved: one line; the curve lags the weights (resume copes).
    monkeypatch.setattr(agent.log, "save_curve", full_disk)
    assert agent.save_model() is True
    assert only_line(capsys.readouterr().out).startswith("could not save the curve in")
    assert load_module(CHECKPOINT).weights_facts(weights)["episodes"] == 3 and curve.read_text() == saved_curve


def test_a_save_that_keeps_failing_while_threads_play_ends_in_one_line_without_a_crash(tmp_path):
    # The weights' place is taken by a folder: every periodic save fails while two threads play, then the final
    # one. It used to be a traceback, then an abort or a segmentation fault (the threads still ran at the exit).
    (tmp_path / "save_model" / "breakout_a3c.weights.h5").mkdir(parents=True)
    result = run_script(TRAIN, "--threads", 2, "--max-steps", 1000, "--save-every", 0.01, "--save-dir", tmp_path,
                        "--seed", 0, timeout=240)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "leaked" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: could not save the weights in {tmp_path / 'save_model'} (Is a directory); the last "
                      "checkpoint saved there is kept"]
    assert "could not save the weights in" in result.stdout and "trying again at the next save" in result.stdout
    assert not (tmp_path / "save_graph" / "breakout_a3c.csv").exists()       # no curve without its weights


def test_a_fresh_run_keeps_the_previous_checkpoint_and_a_resumed_one_goes_on_in_place(a3c, tmp_path, capsys):
    first = a3c.A3CAgent(threads=1, save_dir=tmp_path, verbose=False)
    first.log.open()
    first.log.start(0)
    play_games(first, [1.0, 2.0])
    first.save_model()
    first.save_model(first.log.best_path)
    log = first.log
    earlier = {path: path.read_bytes() for path in (log.model_path, log.best_path, log.log_path, log.graph_path)}
    capsys.readouterr()
    # Resumed from its own weights: nothing is renamed, the curve goes on.
    again = a3c.A3CAgent(threads=1, save_dir=tmp_path, verbose=False)
    again.load_model(log.model_path)
    again.log.start(again.total_steps)
    assert all(path.read_bytes() == data for path, data in earlier.items())
    assert not list(tmp_path.rglob("*.previous.*")) and again.log.episode == 2
    # A fresh run (no --load) in the same folder: every file of the earlier run is kept under another name.
    fresh = a3c.A3CAgent(threads=1, save_dir=tmp_path, verbose=False)
    fresh.log.start(0)
    assert "an earlier run's files are kept as" in capsys.readouterr().out
    for path, data in earlier.items():
        kept = path.with_name(path.name.replace(".", ".previous.", 1))
        assert not path.exists() and kept.read_bytes() == data


def test_a_run_resumed_in_another_folder_numbers_its_games_on(a3c, tmp_path):
    checkpoint = load_module(CHECKPOINT)
    first = a3c.A3CAgent(threads=1, save_dir=tmp_path / "a", verbose=False)
    first.log.open()
    play_games(first, [1.0, 2.0, 3.0])
    first.save_model()
    other = tmp_path / "b"                             # holds an earlier, unrelated run
    (other / "save_graph").mkdir(parents=True)
    checkpoint.write_curve(other / "save_graph" / "breakout_a3c.csv", [(1, 10, 9.0, 10, 0, 1.0)])
    resumed = a3c.A3CAgent(threads=1, save_dir=other, verbose=False)
    resumed.load_model(first.log.model_path)
    assert (resumed.log.episode, resumed.total_steps, resumed.log.scores) == (3, 300, [])
    resumed.log.open()
    resumed.log.start(resumed.total_steps)             # the unrelated curve is kept aside, not continued
    assert (other / "save_graph" / "breakout_a3c.previous.csv").is_file()
    resumed.save_model()                               # before a game: the weights still count 3 games
    assert checkpoint.weights_facts(resumed.log.model_path)["episodes"] == 3
    play_games(resumed, [4.0])
    resumed.save_model()
    facts = checkpoint.weights_facts(resumed.log.model_path)
    assert facts["episodes"] == 4 and facts["total_steps"] == 400
    rows = (other / "save_graph" / "breakout_a3c.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("4,400,4.0,100,0,")     # game 4 is its first row


def test_weights_that_stop_being_finite_stop_the_run_and_are_never_saved(a3c, tmp_path):
    flag = DivergingFlag()
    agent = a3c.A3CAgent(threads=1, save_dir=tmp_path, verbose=False, stop=flag)
    agent.log.open()
    weights = agent.model.get_weights()
    weights[0][0, 0, 0, 0] = np.nan
    agent.model.set_weights(weights)
    assert agent.save_model() is False and agent.save_model(final=True) is False
    assert not list((tmp_path / "save_model").iterdir())
    assert flag.requested and flag.diverged == "a weight" and agent.stop_event.is_set()


def test_a_far_too_large_learning_rate_ends_in_one_line_exit_1_and_saves_nothing(tmp_path):
    result = run_script(TRAIN, "--threads", 1, "--lr", 1e30, "--max-steps", 3000, "--save-dir", tmp_path,
                        "--seed", 0, timeout=240)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "interrupted" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "training diverged" in errors[0]
    assert not list((tmp_path / "save_model").iterdir()) and "weights saved" not in result.stdout


def test_weights_that_are_not_finite_or_not_a_file_are_refused_in_one_line(a3c, tmp_path, capsys):
    checkpoint = load_module(CHECKPOINT)
    model = a3c.build_model()
    weights = model.get_weights()
    weights[-1][0] = np.inf
    model.set_weights(weights)
    diverged = tmp_path / "diverged.weights.h5"
    checkpoint.save_weights(model, diverged, preprocessing="book", total_steps=5, episodes=1)
    fifo = tmp_path / "fifo.weights.h5"
    os.mkfifo(fifo)                                    # reading it would wait for a writer for ever
    for path, reason in ((diverged, "not finite"), (fifo, "not a regular file")):
        with pytest.raises(SystemExit) as refused:
            checkpoint.load_to_play(a3c.build_model(), path, "how")
        assert str(refused.value.code).startswith(f"error: cannot load weights from {path}")
        assert reason in str(refused.value.code)
        agent = a3c.A3CAgent(threads=1, save_dir=tmp_path / "run", verbose=False)
        with pytest.raises(SystemExit) as refused:
            agent.load_model(path)
        assert reason in str(refused.value.code)
    assert not capsys.readouterr().out


@pytest.mark.parametrize("fact, value", [("total_steps", "many"), ("episodes", -1), ("seconds", float("nan")),
                                         ("threads", 2.5), ("preprocessing", "mine")])
def test_stored_facts_of_a_wrong_type_or_range_are_one_line(a3c, fact, value, tmp_path):
    checkpoint = load_module(CHECKPOINT)
    path = tmp_path / "odd.weights.h5"
    checkpoint.save_weights(a3c.build_model(), path, **{"preprocessing": "book", "total_steps": 5, fact: value})
    with pytest.raises(SystemExit) as refused:
        checkpoint.weights_facts(path)
    message = str(refused.value.code)
    assert message.startswith("error:") and "\n" not in message and (fact in message or "preprocessing" in message)
    agent = a3c.A3CAgent(threads=1, save_dir=tmp_path / "run", verbose=False)
    with pytest.raises(SystemExit):
        agent.load_model(path)


def test_a_missing_optimizer_slot_is_a_note_and_the_command_lines_learning_rate_wins(a3c, tmp_path, capsys):
    import h5py
    first = a3c.A3CAgent(threads=1, save_dir=tmp_path / "a", learning_rate=1e-3, verbose=False)
    first.optimizer.iterations.assign(42)
    first.log.open()
    first.save_model()
    path = first.log.model_path
    resumed = a3c.A3CAgent(threads=1, save_dir=tmp_path / "b", learning_rate=5e-4)
    resumed.load_model(path)
    assert int(resumed.optimizer.iterations.numpy()) == 42                   # RMSprop's state goes on ...
    assert float(resumed.optimizer.learning_rate.numpy()) == pytest.approx(5e-4)   # ... at the rate asked for
    assert "note:" not in capsys.readouterr().out
    with h5py.File(path, "a") as file:
        del file["a3c_optimizer"]["3"]
    damaged = a3c.A3CAgent(threads=1, save_dir=tmp_path / "c")
    damaged.load_model(path)
    assert only_line(capsys.readouterr().out) == ("note: the optimiser state in this file is incomplete or damaged: "
                                                  "RMSprop starts its running averages afresh")
    assert int(damaged.optimizer.iterations.numpy()) == 0


@pytest.mark.parametrize("option", ["--t-max", "--envs-per-thread"])
def test_rollouts_that_do_not_fit_in_memory_are_refused_before_anything_is_made(a3c, option, capsys):
    with pytest.raises(SystemExit) as refused:
        a3c.parse_args([option, str(10 ** 30)])
    assert refused.value.code == 2
    assert f"argument {option}: the threads' rollouts" in capsys.readouterr().err.splitlines()[-1]
    with pytest.raises(SystemExit) as refused:
        a3c.parse_args(["--save-dir", ""])
    assert refused.value.code == 2 and "must name a folder" in capsys.readouterr().err


def test_a_huge_rollout_in_a_real_run_leaves_no_folder_behind(tmp_path):
    result = run_script(TRAIN, "--t-max", 10 ** 30, "--save-dir", tmp_path / "run", timeout=120)
    assert result.returncode == 2 and "would need" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("file", ["summary", "summary/breakout_a3c"])
def test_a_file_where_the_summaries_go_is_one_line_before_anything_is_made(file, tmp_path):
    log = load_module(CHECKPOINT).RunLog(tmp_path, "breakout_a3c")
    (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / file).write_text("not a folder")
    with pytest.raises(SystemExit) as refused:
        log.open("| hyperparameter | value |")
    assert str(refused.value.code).startswith("error: cannot write to ") and "summary" in str(refused.value.code)
    assert not (tmp_path / "save_model").exists() and not (tmp_path / "save_graph").exists()


# Python code run before the script (as sitecustomize.py) that sends a signal at a chosen moment, not by timing.
SIGNAL_WHILE_KERAS_LOADS = '''
import importlib.abc, os, signal, sys

class SignalAtImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "keras":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGHUP)
        return None

sys.meta_path.insert(0, SignalAtImport())
'''
SIGNAL_DURING_THE_FIRST_WEIGHTS_SAVE = '''
import os, signal
real_replace = os.replace

def replace(source, target):
    if str(target).endswith(".weights.h5") and not getattr(replace, "sent", False):
        replace.sent = True
        os.kill(os.getpid(), signal.SIGINT)
        print("test: SIGINT sent during the save", flush=True)
    return real_replace(source, target)

os.replace = replace
'''


def run_with_prelude(prelude, folder, script, *args, timeout=240):
    (folder / "prelude").mkdir()
    (folder / "prelude" / "sitecustomize.py").write_text(prelude)
    return run_script(script, *args, env={"PYTHONPATH": str(folder / "prelude")}, timeout=timeout)


def test_a_closed_terminal_while_tensorflow_loads_ends_training_in_one_line(tmp_path):
    result = run_with_prelude(SIGNAL_WHILE_KERAS_LOADS, tmp_path, TRAIN, "--threads", 1, "--save-dir", tmp_path)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "interrupted before training started: nothing saved" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "save_model").exists()


def test_a_closed_terminal_while_tensorflow_loads_ends_watching_at_once(tmp_path):
    result = run_with_prelude(SIGNAL_WHILE_KERAS_LOADS, tmp_path, PLAY, "--episodes", 3)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "interrupted" in result.stdout.splitlines() and not printed_scores(result.stdout)
    assert "Traceback" not in result.stderr


def test_a_signal_during_the_final_save_of_a_finished_run_exits_130_with_the_weights_saved(tmp_path):
    result = run_with_prelude(SIGNAL_DURING_THE_FIRST_WEIGHTS_SAVE, tmp_path, TRAIN, "--threads", 1,
                              "--max-steps", 60, "--save-dir", tmp_path, "--seed", 0)
    assert "SIGINT sent during the save" in result.stdout
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "weights saved to" in result.stdout
    model = load_module(TRAIN).build_model()
    model.load_weights(tmp_path / "save_model" / "breakout_a3c.weights.h5")
