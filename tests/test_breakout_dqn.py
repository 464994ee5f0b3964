"""Breakout DQN (3-atari/1-breakout-dqn): preprocessing, histories, the frame-once replay memory, the
Huber target, the training and playing loops (stopped between steps), the weights file that holds its step
count, and the scripts end to end (train a few steps, resume, play, stop signals, bad input)."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import types

import numpy as np
import pytest
from conftest import ROOT, interrupt_script, load_module, printed_mean, printed_scores, run_script, truncate_file

SCRIPT = "3-atari/1-breakout-dqn/breakout_dqn.py"
PLAY = "3-atari/1-breakout-dqn/play_dqn_model.py"
CHAPTER = ROOT / "3-atari" / "1-breakout-dqn"
TRAINED = CHAPTER / "save_model" / "breakout_dqn_trained.weights.h5"


@pytest.fixture(scope="module")
def dqn():
    return load_module(SCRIPT)


@pytest.fixture(scope="module")
def world():
    """The folder's environment.py: the game, pre_processing and the 4-frame histories."""
    return load_module("3-atari/1-breakout-dqn/environment.py")


@pytest.fixture(scope="module")
def frames():
    """The folder's frame_memory.py: the replay memory that stores each frame once."""
    return load_module("3-atari/1-breakout-dqn/frame_memory.py")


@pytest.fixture(scope="module")
def checkpoint():
    """The folder's dqn_checkpoint.py: the weights file with its step count, epsilon and curve."""
    return load_module("3-atari/1-breakout-dqn/dqn_checkpoint.py")


def frame(number):
    """A blank frame that carries its number in two pixels (so 65,536 frames stay distinct)."""
    image = np.zeros((84, 84), np.uint8)
    image[0, 0], image[0, 1] = number % 256, number // 256
    return image


def ids(stack):
    return tuple(int(plane[0, 0]) + 256 * int(plane[0, 1]) for plane in stack)


def test_pre_processing_of_a_real_frame(dqn, world):
    env = world.make_env()
    observe, _ = world.start_game(env, dqn.NO_OP_STEPS, seed=0)
    env.close()
    assert observe.shape == (210, 160, 3)
    state = world.pre_processing(observe)
    assert state.shape == (84, 84) and state.dtype == np.uint8
    assert state.min() < 50 and state.max() > 100       # a dark screen with bright bricks and walls


def test_history_keeps_the_newest_frame_first_and_restarts_after_a_lost_life(world):
    history = world.new_history(frame(1))
    assert history.shape == (4, 84, 84) and history.dtype == np.uint8
    for number in (2, 3, 4, 5):
        history = world.next_history_of(history, frame(number))
    assert ids(history) == (5, 4, 3, 2)
    assert ids(world.new_history(frame(9))) == (9, 9, 9, 9)     # after a lost life: nothing of the old one


def test_history_in_memory_restarts_after_a_lost_life(frames):
    memory = frames.ReplayMemory(100)
    memory.start_history(frame(1))
    for number in (2, 3):
        memory.append(1, 0.0, frame(number), False)
    memory.append(1, 0.0, frame(4), True)                    # life lost on frame 4
    memory.append(0, 0.0, frame(5), False)                   # FIRE in the new life
    assert ids(memory.stacks(np.array([2]))[0]) == (3, 2, 1, 1)   # newest first, game start repeated
    assert ids(memory.stacks(np.array([3]))[0]) == (4, 4, 4, 4)   # the new life starts from frame 4
    assert ids(memory.stacks(np.array([4]))[0]) == (5, 4, 4, 4)   # and never reaches into the old life


def play_fake_games(world, memory, steps, seed=0):
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
            history = world.new_history(frame(number))
            continue
        dead = bool(rng.random() < 0.08)
        life_of[number] = {life}
        memory.append(int(rng.integers(3)), float(rng.integers(2)), frame(number), dead)
        after = world.next_history_of(history, frame(number))
        transitions[ids(history)] = (history, after, dead)
        if dead and rng.random() < 0.3:                      # game over
            history = None
        elif dead:                                           # the next life starts from this frame
            life += 1
            life_of[number] = {life - 1, life}               # ends one life, starts the next
            history = world.new_history(frame(number))
        else:
            history = after
    return transitions, life_of, number


def test_replay_stacks_equal_the_agents_histories_across_lives_and_games(world, frames):
    memory = frames.ReplayMemory(5000)
    transitions, _, _ = play_fake_games(world, memory, 3000)
    states, actions, rewards, next_states, deads = memory.sample(500)
    assert states.shape == next_states.shape == (500, 4, 84, 84) and states.dtype == np.uint8
    for state, next_state, dead in zip(states, next_states, deads):
        history, after, was_dead = transitions[ids(state)]   # KeyError: a stack the agent never saw
        assert np.array_equal(state, history) and dead == was_dead
        if not dead:                                         # after a lost life s' is never bootstrapped
            assert np.array_equal(next_state, after)
    assert any(len(set(ids(state))) == 1 for state in states)   # first states of lives: one frame 4 times


def test_replay_memory_wraps_around_and_never_mixes_lives(world, frames):
    memory = frames.ReplayMemory(300)
    transitions, life_of, last = play_fake_games(world, memory, 1000, seed=1)
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


def test_replay_memory_stores_each_frame_once(frames):
    memory = frames.ReplayMemory(400_000)
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
    """The target network gets weights of its own (its Q-values shifted by 1.0), so a train_step that bootstrapped
    from the online network (self.model instead of self.target_model, tried on a copy) gives another loss here."""
    import tensorflow as tf
    agent = dqn.DQNAgent(memory_size=64)
    target_weights = agent.model.get_weights()
    target_weights[-1] = target_weights[-1] + 1.0                 # the Q-value layer's bias: every Q-value + 1
    agent.target_model.set_weights(target_weights)
    rng = np.random.default_rng(0)
    states = rng.integers(0, 255, (4, 4, 84, 84), dtype=np.uint8)
    next_states = rng.integers(0, 255, (4, 4, 84, 84), dtype=np.uint8)
    actions = np.array([0, 1, 2, 1], np.int32)
    rewards = np.array([1.0, 0.0, -1.0, 0.0], np.float32)
    deads = np.array([0.0, 1.0, 0.0, 0.0], np.float32)
    q = agent.model(dqn.to_network_input(states)).numpy()[np.arange(4), actions]

    def huber_of_targets(network):
        next_q = network(dqn.to_network_input(next_states)).numpy().max(axis=1)
        error = np.abs(rewards + 0.99 * (1 - deads) * next_q - q)
        return np.mean(np.where(error <= 1, 0.5 * error ** 2, error - 0.5))
    expected, if_online = huber_of_targets(agent.target_model), huber_of_targets(agent.model)
    assert abs(expected - if_online) > 0.1                      # the two networks' targets differ here
    before = agent.model.get_weights()[-1].copy()
    loss = float(agent.train_step(states, actions, rewards, next_states, deads))
    assert loss == pytest.approx(expected, rel=1e-4)
    assert not np.array_equal(before, agent.model.get_weights()[-1])
    action, max_q = agent.greedy(tf.constant(states[0]))
    assert max_q.numpy() == pytest.approx(agent.model(dqn.to_network_input(states[:1])).numpy().max(), rel=1e-5)



# ---- the loops stop between steps; the weights file holds the step count, epsilon and curve ----
def test_training_loop_stops_between_steps_and_drops_the_unfinished_game(dqn, world, capsys):
    agent = dqn.DQNAgent(memory_size=1000, train_start=1000)      # the memory never fills: no training
    env = world.make_env()
    stop, stored = types.SimpleNamespace(requested=False), []
    store = agent.append_sample

    def append_sample(*transition):                              # a signal arrives during the 30th step
        store(*transition)
        stored.append(transition)
        stop.requested = len(stored) == 30
    agent.append_sample = append_sample
    curve = []
    assert dqn.train(agent, env, max_steps=10_000, curve=curve, seed=0, stop=stop) is True
    assert agent.global_step == len(stored) == 30                # no step after the flag went up
    assert curve == [] and "episode:" not in capsys.readouterr().out   # no game over in 30 steps: not counted

    stop.requested = False                                       # a step budget ends mid-game: that game counts
    assert dqn.train(agent, env, max_steps=50, curve=curve, seed=0, stop=stop) is False
    assert agent.global_step == 50 and curve == [[1, 50, curve[0][2]]]
    assert capsys.readouterr().out.startswith("episode: 1 | score:")
    env.close()


def test_playing_loop_stops_between_steps_and_counts_finished_games_only(dqn, world, capsys):
    class StopInTheSecondGame:                                   # the env of the real game, counting its steps
        def __init__(self, env, stop):
            self.env, self.stop, self.games, self.steps = env, stop, 0, 0

        def reset(self, **kwargs):
            self.games, self.steps = self.games + 1, 0
            return self.env.reset(**kwargs)

        def step(self, action):
            self.steps += 1                                      # step 40: past the 1..30 FIREs of the start
            self.stop.requested = self.stop.requested or (self.games == 2 and self.steps == 40)
            return self.env.step(action)

    agent = dqn.DQNAgent(memory_size=1)
    agent.epsilon = 1.0
    stop = types.SimpleNamespace(requested=False)
    env = StopInTheSecondGame(world.make_env(), stop)
    scores = dqn.play(agent, env, episodes=3, max_episode_steps=100, seed=0, stop=stop)
    env.env.close()
    assert len(scores) == 1 and env.games == 2 and env.steps == 40
    assert printed_scores(capsys.readouterr().out) == scores


def test_the_weights_file_holds_its_facts_and_stays_a_keras_weights_file(dqn, checkpoint, tmp_path):
    agent = dqn.DQNAgent(memory_size=64)
    path = tmp_path / "run.weights.h5"
    curve = [[1, 150, 2.0], [2, 310, 0.0], [3, 512, 7.0]]
    checkpoint.save_weights(agent.model, path, 530, 0.25, 3, curve)
    assert checkpoint.weights_facts(path) == {"global_step": 530, "epsilon": 0.25, "episode": 3, "curve": curve}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.weights.h5"]     # no sidecar, no temp file
    other = dqn.DQNAgent(memory_size=64)
    other.model.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(agent.model.get_weights(), other.model.get_weights()))

    # A stale sidecar beside it (another run's facts, left by an old version): the file's own facts win.
    (tmp_path / "run.json").write_text(json.dumps({"global_step": 9, "epsilon": 1.0, "episode": 1,
                                                   "curve": [[1, 9, 0.0]]}))
    assert checkpoint.weights_facts(path)["global_step"] == 530


def test_the_shipped_sidecar_is_still_read_and_a_self_contradicting_one_is_refused(dqn, checkpoint, tmp_path):
    facts = checkpoint.weights_facts(TRAINED)                           # weights from before the facts went inside
    assert facts["global_step"] == 1_223_444 and facts["episode"] == 2605 == facts["curve"][-1][0]
    agent = dqn.DQNAgent(memory_size=64)
    plain = tmp_path / "plain.weights.h5"
    agent.model.save_weights(plain)
    assert checkpoint.weights_facts(plain) is None                      # plain Keras weights, no sidecar: none
    (tmp_path / "plain.json").write_text(json.dumps({"global_step": 900, "epsilon": 0.5, "episode": 4,
                                                     "curve": [[1, 300, 1.0], [3, 800, 2.0]]}))
    with pytest.raises(SystemExit) as refused:                   # its curve ends at game 3, it says game 4
        checkpoint.weights_facts(plain)
    assert str(refused.value).startswith(f"error: cannot read {tmp_path / 'plain.json'}")
    assert "\n" not in str(refused.value)
    (tmp_path / "plain.json").write_text(json.dumps({"global_step": 900, "epsilon": float("nan"),
                                                     "episode": 3, "curve": [[3, 800, 2.0]]}))
    with pytest.raises(SystemExit):
        checkpoint.weights_facts(plain)


def test_unreadable_weights_give_one_line(dqn, tmp_path):
    load_weights = load_module("3-atari/1-breakout-dqn/plumbing.py").load_weights
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not an HDF5 file")
    with pytest.raises(SystemExit) as refused:
        load_weights(dqn.DQNAgent(memory_size=1).model, garbage, "train them with: python breakout_dqn.py")
    message = str(refused.value)
    assert message.startswith(f"error: cannot load weights from {garbage}") and "\n" not in message


# ---- bad values on the command line: argparse's message and exit 2 (checked before anything is built) ----
@pytest.mark.parametrize("args, complaint", [
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--learning-rate", "inf"], "--learning-rate"),
    (["--learning-rate", "0"], "--learning-rate"),
    (["--memory-size", "4", "--train-start", "2"], "--memory-size"),          # sampling would never end
    (["--memory-size", "100", "--train-start", "500"], "--train-start"),      # training would never start
    (["--train-start", "8", "--memory-size", "1000"], "--train-start"),       # not a minibatch in memory
    (["--seed", "-1"], "--seed"),
    (["--episodes", "0"], "--episodes"),
    (["--no-such-flag"], "unrecognized arguments"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_bad_values_are_refused_by_argparse(dqn, capsys, args, complaint):
    with pytest.raises(SystemExit) as refused:
        dqn.parse_args(args)
    assert refused.value.code == 2
    assert complaint in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("args", [["--epsilon", "nan"], ["--epsilon", "1.5"], ["--episodes", "-3"]])
def test_bad_values_of_the_play_script_are_refused_by_argparse(capsys, args):
    play = load_module(PLAY)
    with pytest.raises(SystemExit) as refused:
        play.parse_args(args)
    assert refused.value.code == 2 and args[0] in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_memory_too_small_to_sample_from_is_refused_at_once_and_leaves_nothing(tmp_path):
    result = run_script(SCRIPT, "--memory-size", 4, "--train-start", 2, "--save-dir", tmp_path / "run", timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: argument --memory-size" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_help_shows_the_defaults_and_an_unwritable_save_dir_is_one_line(dqn, capsys, tmp_path):
    with pytest.raises(SystemExit) as shown:
        dqn.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())              # argparse wraps the lines
    assert shown.value.code == 0
    for shown_default in ("--memory-size MEMORY_SIZE replay memory size in frames", "(default: 400000)",
                          "(default: 50000)", "(default: 10000)", "(default: 0.0001)", "(default: 4)",
                          "--play", "--load", "--max-steps", "--learning-rate"):
        assert shown_default in text, shown_default
    blocked = tmp_path / "file"
    blocked.write_text("a file, not a folder")
    result = run_script(SCRIPT, "--save-dir", blocked, "--max-steps", 1, "--memory-size", 100, "--train-start", 50)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: cannot write to")


# ---- the scripts end to end ----
def test_train_resume_and_play_end_to_end(dqn, checkpoint, tmp_path):
    result = run_script(SCRIPT, "--max-steps", 1200, "--train-start", 600, "--memory-size", 2000,
                        "--target-update", 500, "--seed", 0, "--save-dir", tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("episode:")]
    assert lines and all("avg max Q:" in line and "avg loss:" in line and "global step:" in line
                         for line in lines)
    weights = tmp_path / "save_model" / "breakout_dqn.weights.h5"
    saved = checkpoint.weights_facts(weights)
    assert (tmp_path / "save_graph" / "breakout_dqn.png").exists()
    assert saved["global_step"] == 1200 and saved["epsilon"] < 1.0
    assert [row[2] for row in saved["curve"]] == printed_scores(result.stdout)
    assert sorted(p.name for p in (tmp_path / "save_model").iterdir()) == ["breakout_dqn.weights.h5"]
    events = list((tmp_path / "summary" / "breakout_dqn").glob("events.out.tfevents.*"))
    assert events and b"Total Reward/Episode" in events[0].read_bytes()
    assert b"Average Loss/Episode" in events[0].read_bytes()
    assert not list(tmp_path.rglob(".tmp-*"))

    # --render with no display (run_script gives none): a note, then headless, never SDL's segfault.
    resumed = run_script(SCRIPT, "--load", weights, "--max-steps", 1300, "--train-start", 50,
                         "--memory-size", 500, "--save-dir", tmp_path, "--render", timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.splitlines()[1].startswith("no display found: running headless")   # after the precision
    assert f"resuming at step 1200, episode {saved['episode'] + 1}," in resumed.stdout
    again = checkpoint.weights_facts(weights)
    assert again["global_step"] == 1300 and again["curve"][:len(saved["curve"])] == saved["curve"]

    # Watching, with either script, writes nothing: not in the chapter folder, not in the working folder.
    chapter_before = sorted(CHAPTER.rglob("*"))
    watching = tmp_path / "cwd"
    watching.mkdir()
    played = run_script(PLAY, "--load", weights, "--episodes", 1, "--max-episode-steps", 200, "--seed", 0,
                        "--render", cwd=watching)
    assert played.returncode == 0, played.stderr[-2000:]
    first_lines = played.stdout.splitlines()[:2]          # which precision and why, then the missing display
    assert first_lines[0].startswith("precision: ") and first_lines[1].startswith("no display found: running headless")
    assert len(printed_scores(played.stdout)) == 1 and printed_mean(played.stdout) == printed_scores(played.stdout)[0]
    flag = run_script(SCRIPT, "--play", "--load", weights, "--episodes", 2, "--seed", 0, cwd=watching)
    assert flag.returncode == 0, flag.stderr[-2000:]
    assert len(printed_scores(flag.stdout)) == 2
    assert printed_mean(flag.stdout) == pytest.approx(np.mean(printed_scores(flag.stdout)), abs=0.05)
    assert flag.stdout.strip().splitlines()[-1].endswith("over 2 episodes")
    assert not list(watching.iterdir()) and sorted(CHAPTER.rglob("*")) == chapter_before


@pytest.mark.parametrize("signum, second", [(signal.SIGTERM, False), (signal.SIGINT, True), (signal.SIGHUP, False)],
                         ids=["sigterm", "second-ctrl-c-during-the-save", "sighup-a-closed-terminal"])
def test_a_stop_signal_saves_once_and_exits_130_with_weights_that_load(dqn, checkpoint, tmp_path, signum, second):
    result = interrupt_script(SCRIPT, "--memory-size", 1000, "--train-start", 100, "--save-dir", tmp_path,
                              "--seed", 0, signum=signum, second_signal_during_save=second, timeout=180)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert ("second SIGINT sent during the save" in result.stdout) == second
    assert result.stdout.count("interrupted at step") == 1
    step = int(result.stdout.split("interrupted at step ")[1].split(":")[0])
    weights = tmp_path / "save_model" / "breakout_dqn.weights.h5"
    assert (tmp_path / "save_graph" / "breakout_dqn.png").is_file()
    assert not list(tmp_path.rglob(".tmp-*"))
    facts = checkpoint.weights_facts(weights)                    # the weights and their facts, one file
    assert facts["global_step"] == step and facts["curve"][-1][1] <= step
    dqn.DQNAgent(memory_size=1).model.load_weights(weights)


def test_a_signal_before_training_starts_exits_130_in_one_line(tmp_path):
    # The first line is printed just before the two networks are built (a second or more): stop then.
    result = interrupt_script(SCRIPT, "--memory-size", 1000, "--train-start", 100, "--save-dir", tmp_path / "run",
                              when=lambda line: line.startswith("DQN on Breakout:"), timeout=120)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "interrupted before training started: nothing saved"
    assert "episode:" not in result.stdout
    assert not (tmp_path / "run" / "save_model" / "breakout_dqn.weights.h5").exists()


@pytest.mark.parametrize("script", [SCRIPT, PLAY])
def test_truncated_weights_give_one_line_exit_1_and_leave_nothing(tmp_path, script):
    bad = truncate_file(TRAINED, tmp_path / "bad.weights.h5")
    run = tmp_path / "run"
    extra = ["--max-steps", 1, "--save-dir", run] if script == SCRIPT else ["--episodes", 1]
    result = run_script(script, "--load", bad, *extra, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot load weights from {bad}") and "breakout_dqn.py" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.weights.h5"]      # no run/, nothing in the cwd


def test_a_truncated_sidecar_gives_one_line_exit_1_and_leaves_nothing(tmp_path):
    weights = tmp_path / "breakout_dqn_trained.weights.h5"
    shutil.copyfile(TRAINED, weights)
    truncate_file(TRAINED.with_name("breakout_dqn_trained.json"), tmp_path / "breakout_dqn_trained.json")
    result = run_script(SCRIPT, "--load", weights, "--max-steps", 1, "--save-dir", tmp_path / "run")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot read {tmp_path / 'breakout_dqn_trained.json'}")
    assert not (tmp_path / "run").exists()


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


def test_the_shipped_agent_plays_far_better_than_random_with_either_script():
    # Random play scores about 1.7 a game; the shipped weights over 100. 3 seeded games keep it quick.
    result = run_script(PLAY, "--episodes", 3, "--no-render", "--seed", 1, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert printed_mean(result.stdout) >= 20, result.stdout
    # `breakout_dqn.py --play` plays the shipped weights with the same code: the same seed, the same game.
    flag = run_script(SCRIPT, "--play", "--episodes", 1, "--seed", 1, timeout=300)
    assert flag.returncode == 0, flag.stderr[-2000:]
    assert printed_scores(flag.stdout) == printed_scores(result.stdout)[:1]


def test_a_window_that_cannot_open_means_headless_with_a_note():
    # DISPLAY names a screen where no X server answers: ALE's SDL window would crash the process (tried: exit 139);
    # the script asks Tk first and plays headless after one line.
    result = run_script(PLAY, "--render", "--episodes", 1, "--max-episode-steps", 10, "--seed", 0, display=":987",
                        timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert 'cannot open a window (couldn\'t connect to display ":987"): running headless' in result.stdout
    assert len(printed_scores(result.stdout)) == 1


# ---- nothing a reader trained is ever lost: failed saves, reruns, signals, numbers that are not finite ----
def run_launched(launcher, relpath, *args, timeout=300):
    """Run a chapter script as __main__ through `launcher` (a python -c program that first changes one thing about
    the process, then runs the script with runpy), like run_script: no display, a temporary working folder."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env.update({"PYTHONUNBUFFERED": "1", "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2",
                "MPLBACKEND": "Agg"})
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-c", launcher, str(ROOT / relpath), *map(str, args)], cwd=cwd,
                              env=env, capture_output=True, text=True, timeout=timeout)


RUN_SCRIPT = '''
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(script))
runpy.run_path(script, run_name="__main__")
'''

# Every file the process writes can hold 4 KiB at most (a weights file is 6.7 MB): each write past that fails as
# on a full disk (EFBIG instead of ENOSPC). HDF5 writing such a file itself crashed the process at exit (exit 139).
DISK_FULL_AFTER_4_KIB = '''
import os, resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)             # a write past the limit fails instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
''' + RUN_SCRIPT

# A closed terminal (SIGHUP) while the script imports Keras: during start-up, before main() runs.
SIGHUP_WHILE_KERAS_LOADS = '''
import os, runpy, signal, sys

class SignalWhenKerasLoads:
    def find_spec(self, name, path=None, target=None):
        if name == "keras":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGHUP)
            print("test: SIGHUP sent while keras loads", flush=True)
        return None
sys.meta_path.insert(0, SignalWhenKerasLoads())
''' + RUN_SCRIPT

TINY = ("--memory-size", 100, "--train-start", 50)            # trains from the 50th step, fits anywhere


def save_a_checkpoint(dqn, checkpoint, path, step=100, epsilon=0.5, curve=((1, 100, 2.0),)):
    path.parent.mkdir(parents=True, exist_ok=True)
    agent = dqn.DQNAgent(memory_size=64)
    checkpoint.save_weights(agent.model, path, step, epsilon, curve[-1][0] if curve else 0, [list(r) for r in curve])
    return agent


def test_the_weights_file_is_built_in_memory_and_loads_as_keras_weights(dqn, checkpoint, tmp_path):
    agent = dqn.DQNAgent(memory_size=64)
    plumbing = load_module("3-atari/1-breakout-dqn/plumbing.py")
    assert plumbing.weights_image(agent.model) is not None       # this Keras: HDF5 never writes to the disk
    path = tmp_path / "run.weights.h5"
    checkpoint.save_weights(agent.model, path, 7, 0.5, 1, [[1, 7, 0.0]])
    other = dqn.DQNAgent(memory_size=64)
    other.model.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(agent.model.get_weights(), other.model.get_weights()))


def test_saves_that_fail_on_a_full_disk_are_one_line_each_and_never_a_crash(dqn, checkpoint, tmp_path):
    weights = tmp_path / "save_model" / "breakout_dqn.weights.h5"
    save_a_checkpoint(dqn, checkpoint, weights)
    before = weights.read_bytes()
    result = run_launched(DISK_FULL_AFTER_4_KIB, SCRIPT, "--load", weights, "--episodes", 3, "--save-every", 1,
                          *TINY, "--seed", 0, "--save-dir", tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]                # not 139: no segmentation fault at exit
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    failed = (f"could not save the weights in {weights.parent} (File too large): the last checkpoint there is kept; "
              "trying again at the next save")
    lines = result.stdout.splitlines()
    assert lines.count(failed) == 2 and lines.index(failed) < max(i for i, l in enumerate(lines) if "episode: 3 |" in l)
    assert result.stderr.strip().splitlines()[-1] == (f"error: could not save the weights in {weights.parent} "
                                                      "(File too large); the last checkpoint saved there is kept")
    assert weights.read_bytes() == before and not list(tmp_path.rglob(".tmp-*"))


def test_a_failed_periodic_save_is_one_line_and_training_goes_on_to_save(dqn, tmp_path, capsys, monkeypatch,
                                                                          own_signal_handlers):
    saving = sys.modules[dqn.resume.__module__]                  # the dqn_checkpoint that breakout_dqn uses
    real, calls = saving.save_weights_file, []

    def full_disk_once(model, path, add=None):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(model, path, add)
    monkeypatch.setattr(saving, "save_weights_file", full_disk_once)
    run = ["--episodes", "2", "--save-every", "1", *map(str, TINY), "--seed", "0", "--save-dir", str(tmp_path)]
    assert dqn.main(run) is None
    out = capsys.readouterr().out
    assert f"could not save the weights in {tmp_path / 'save_model'} (No space left on device)" in out
    assert out.index("could not save") < out.index("episode: 2 |")
    facts = saving.weights_facts(tmp_path / "save_model" / "breakout_dqn.weights.h5")
    assert [row[0] for row in facts["curve"]] == [1, 2]


def test_a_signal_during_the_final_save_of_a_run_that_ended_by_itself_exits_130(dqn, tmp_path, capsys, monkeypatch,
                                                                                 own_signal_handlers):
    saving = sys.modules[dqn.resume.__module__]
    real = saving.save_weights

    def ctrl_c_while_saving(*args):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args)
    monkeypatch.setattr(saving, "save_weights", ctrl_c_while_saving)
    with pytest.raises(SystemExit) as ended:
        dqn.main(["--max-steps", "60", *map(str, TINY), "--seed", "0", "--save-dir", str(tmp_path)])
    assert ended.value.code == 130
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("weights saved to")     # the save went on
    assert saving.weights_facts(tmp_path / "save_model" / "breakout_dqn.weights.h5")["global_step"] == 60


@pytest.mark.parametrize("script", [SCRIPT, PLAY])
def test_a_signal_while_the_libraries_load_ends_in_one_line_with_130(tmp_path, script):
    run = tmp_path / "run"
    extra = [*TINY, "--save-dir", run] if script == SCRIPT else ["--episodes", 1, "--max-episode-steps", 10]
    result = run_launched(SIGHUP_WHILE_KERAS_LOADS, script, *extra, timeout=120)
    assert "test: SIGHUP sent while keras loads" in result.stdout
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "episode:" not in result.stdout
    if script == SCRIPT:
        assert result.stderr.strip().splitlines()[-1] == "interrupted before training started: nothing saved"
        assert not run.exists()
    else:
        assert result.stdout.strip().splitlines()[-1] == "interrupted" and "mean score" not in result.stdout


def test_a_fresh_run_keeps_the_previous_one_and_a_resumed_run_goes_on_in_place_or_elsewhere(
        dqn, checkpoint, tmp_path, capsys, own_signal_handlers):
    weights, graph = tmp_path / "save_model" / "breakout_dqn.weights.h5", tmp_path / "save_graph" / "breakout_dqn.png"
    run = ["--max-steps", "60", *map(str, TINY), "--seed", "0", "--save-dir", str(tmp_path)]
    dqn.main(run)
    first = checkpoint.weights_facts(weights)
    assert "earlier run" not in capsys.readouterr().out
    dqn.main(run)                                                          # a rerun: the first run is kept
    out = capsys.readouterr().out
    previous = tmp_path / "save_model" / "breakout_dqn.previous.weights.h5"
    kept = (f"an earlier run's files are kept as {previous}, {tmp_path / 'save_graph' / 'breakout_dqn.previous.png'}, "
            f"{tmp_path / 'summary' / 'breakout_dqn.previous'}")              # TensorBoard: the earlier run apart
    assert out.splitlines()[2] == kept                                     # after the precision and the sizes
    assert checkpoint.weights_facts(previous) == first and graph.is_file()
    kept_bytes = previous.read_bytes()

    dqn.main(["--load", str(weights), "--max-steps", "120", *map(str, TINY), "--save-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "earlier run" not in out and "resuming at step 60, episode 2" in out      # in place: nothing renamed
    assert previous.read_bytes() == kept_bytes
    resumed = checkpoint.weights_facts(weights)
    assert [row[0] for row in resumed["curve"]] == [1, 2] and resumed["global_step"] == 120

    elsewhere = tmp_path / "elsewhere"                                     # another --save-dir: the record goes on
    dqn.main(["--load", str(weights), "--max-steps", "180", *map(str, TINY), "--save-dir", str(elsewhere)])
    moved = checkpoint.weights_facts(elsewhere / "save_model" / "breakout_dqn.weights.h5")
    assert moved["curve"][:2] == resumed["curve"] and moved["curve"][-1][0] == 3 and moved["global_step"] == 180


def test_weights_that_are_not_finite_are_neither_trained_from_played_nor_saved(dqn, checkpoint, tmp_path,
                                                                               own_signal_handlers):
    agent = dqn.DQNAgent(memory_size=64)
    agent.model.set_weights([np.full_like(weight, np.nan) for weight in agent.model.get_weights()])
    nan = tmp_path / "nan.weights.h5"
    agent.model.save_weights(nan)                                  # as a run that checked nothing would have
    for refused in (lambda: checkpoint.resume(dqn.DQNAgent(memory_size=64), nan, "train them anew"),
                    lambda: dqn.play_main(load=nan, episodes=1)):
        with pytest.raises(SystemExit) as ended:
            refused()
        assert str(ended.value).startswith(f"error: cannot load weights from {nan} (they hold numbers that are not "
                                           "finite") and "\n" not in str(ended.value)
    stop = load_module("3-atari/1-breakout-dqn/plumbing.py").StopFlag()
    files = checkpoint.RunFiles(tmp_path / "run", "breakout_dqn")
    assert files.save(agent, [[1, 10, 0.0]], 0, stop, final=True) is False      # nothing written, the run stops
    assert stop.requested and stop.diverged == "a weight of the network"
    assert not files.weights.exists() and not files.graph.exists()


def test_a_learning_rate_that_diverges_ends_in_one_line_exit_1_and_saves_no_nan(tmp_path):
    result = run_script(SCRIPT, "--learning-rate", "1e30", "--max-steps", 300, "--memory-size", 200,
                        "--train-start", 40, "--train-freq", 1, "--precision", "float32", "--seed", 0,
                        "--save-dir", tmp_path, timeout=240)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: training diverged (the loss is not a finite ")
    assert not (tmp_path / "save_model" / "breakout_dqn.weights.h5").exists()
    assert "weights saved" not in result.stdout and not list(tmp_path.rglob(".tmp-*"))


def set_fact(path, name, value):
    import h5py
    with h5py.File(path, "a") as file:
        if name == "dqn_curve":
            del file[name]
            file.create_dataset(name, data=np.asarray(value, np.float64))
        else:
            file.attrs[name] = value


@pytest.mark.parametrize("name, value", [
    ("dqn_epsilon", float("nan")), ("dqn_epsilon", 1.5), ("dqn_global_step", "100"), ("dqn_episode", -1),
    ("dqn_global_step", 2.5), ("dqn_curve", [[1, 100, float("nan")]]), ("dqn_curve", [[1, 100], [2, 200]]),
    ("dqn_curve", [[1, 100, 2.0], [2, 150, 0.0]]),                       # ends at game 2, the file says game 1
], ids=["epsilon-nan", "epsilon-1.5", "step-as-text", "episode-negative", "step-not-whole", "curve-nan",
        "curve-two-columns", "curve-of-another-run"])
def test_stored_facts_of_the_wrong_type_or_range_are_refused_in_one_line(dqn, checkpoint, tmp_path, name, value):
    weights = tmp_path / "run.weights.h5"
    save_a_checkpoint(dqn, checkpoint, weights)
    set_fact(weights, name, value)
    with pytest.raises(SystemExit) as refused:
        checkpoint.resume(dqn.DQNAgent(memory_size=64), weights, "train them anew")
    message = str(refused.value)
    assert message.startswith(f"error: cannot read the step count and epsilon stored in {weights}")
    assert "\n" not in message and message.endswith("train anew without --load")


def test_values_are_checked_before_anything_is_made(dqn, frames, capsys):
    memory = frames.ReplayMemory(10)
    per_slot = sum(a.nbytes for a in (memory.frames, memory.actions, memory.rewards, memory.deads,
                                      memory.starts, memory.valid)) / memory.size
    assert frames.BYTES_PER_FRAME == per_slot
    with pytest.raises(SystemExit) as refused:                     # 100,000,000 frames: 658 GiB
        dqn.parse_args(["--memory-size", "100000000", "--train-start", "50"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert refused.value.code == 2 and "argument --memory-size: a replay memory of 100,000,000 frames" in last
    assert "would need 658.4 GiB of memory" in last
    assert dqn.parse_args(["--play", "--memory-size", "100000000", "--train-start", "50"]).play   # play: no memory
    with pytest.raises(SystemExit) as refused:
        dqn.parse_args(["--save-dir", ""])                          # not the current folder, unasked
    assert refused.value.code == 2 and "--save-dir" in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("script", [SCRIPT, PLAY])
def test_a_fifo_given_as_weights_is_one_line_not_a_hang(tmp_path, script):
    fifo = tmp_path / "fifo.weights.h5"
    os.mkfifo(fifo)
    extra = ["--max-steps", 1, *TINY, "--save-dir", tmp_path / "run"] if script == SCRIPT else ["--episodes", 1]
    result = run_script(script, "--load", fifo, *extra, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot load weights from {fifo} (not a regular")
    assert not (tmp_path / "run").exists()


def test_a_sidecar_that_is_a_fifo_is_one_line_not_a_hang(dqn, checkpoint, tmp_path):
    plain = tmp_path / "plain.weights.h5"
    dqn.DQNAgent(memory_size=64).model.save_weights(plain)
    os.mkfifo(tmp_path / "plain.json")
    with pytest.raises(SystemExit) as refused:
        checkpoint.weights_facts(plain)
    assert str(refused.value).startswith(f"error: cannot read {tmp_path / 'plain.json'}")
    assert "not a regular file" in str(refused.value)


def test_a_summary_that_is_a_file_is_one_line_exit_1(dqn, tmp_path, own_signal_handlers):
    (tmp_path / "summary").write_text("a file where the TensorBoard folder goes")
    with pytest.raises(SystemExit) as refused:
        dqn.main(["--max-steps", "1", *map(str, TINY), "--save-dir", str(tmp_path)])
    assert str(refused.value) == f"error: cannot write to {tmp_path / 'summary' / 'breakout_dqn'}: Not a directory"
