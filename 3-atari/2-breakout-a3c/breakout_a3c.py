"""Breakout with A3C, the Asynchronous Advantage Actor-Critic (Keras 3 on TensorFlow).

Mnih et al., "Asynchronous Methods for Deep Reinforcement Learning", ICML 2016.

One GLOBAL network θ (a shared convolutional trunk with a policy head π(a|s) and a value head V(s)) and
several actor-learner threads. Each thread has its own Breakout game(s) and its own LOCAL copy θ' of the network:

    play with a ~ π(a|s; θ') for t_max steps (the book: or until a life is lost)
    R = 0                      after a step that lost a life or ended the game
        V(s_next; θ')          at the end of the rollout otherwise (bootstrap from the state AFTER the last step)
    for i = last ... first:    R   = r_i + γ R                 (k-step return; r clipped to [-1, 1])
                               A_i = R − V(s_i; θ')            (advantage)
    policy loss = mean_i [ −log π(a_i|s_i; θ') · A_i  −  β · H(π(·|s_i; θ')) ]    H = −Σ_a π log π
    value loss  = mean_i [ (R_i − V(s_i; θ'))² ]
    θ  ← RMSprop step on the gradients of (policy loss + ½ · value loss) taken at θ'   (one thread at a time)
    θ' ← θ                                                                         (one compiled assign)

The advantage A is a constant in the policy loss (no gradient flows through it into the value head). The
−β·H term rewards uncertainty, which keeps the threads exploring.

Two ways to run it:
- The book's (default): 8 threads, each playing ONE game and asking its network for one action per step.
- Fast (`--fast`): 4 threads, each playing 8 games at once (`--envs-per-thread N`, stepped by the emulator's own
  C++ threads outside Python's interpreter lock), choosing all N actions with one network call and learning from
  t_max × N samples per update. On a 2-core CPU this plays several times more steps per second (BENCHMARKS.md).

What differs from the book's 2017 code:
- The book bootstrapped from V of the wrong state and broadcast the critic loss into an N×N matrix; here R is
  bootstrapped from V(next state) and the value loss is a plain mean over the rollout.
- After a lost life the book rebuilt the frame history with a reshape that scrambled the pixels; here the
  history restarts from four copies of the new frame (book preprocessing; environment.py lists the
  differences of the fast path's preprocessing).
- The book forced FIRE after a lost life but stored that step as if the policy had chosen it; here FIRE is
  pressed by the environment code and is not a training sample.
- Episodes are counted thread-safely; global updates are serialised by a lock (Keras 3's apply_gradients is
  not thread-safe); the local copy is refreshed by one compiled assign instead of set_weights.
- At most `--active-threads` workers (default: one per CPU core) play at the same time; the others wait their
  turn (turns.py). TensorFlow runs each small kernel on the thread that called it (`one_thread_per_kernel`).
- Gradients are clipped to a global norm (40 by default, 0.5 with --fast); not in the book, a common A3C
  safeguard so that one unlucky rollout cannot wreck the shared network.

Run:   python 3-atari/2-breakout-a3c/breakout_a3c.py --fast
Watch: tensorboard --logdir 3-atari/2-breakout-a3c/summary
Play:  python 3-atari/2-breakout-a3c/play_a3c_model.py --episodes 10 --no-render

The shipped save_model/breakout_a3c_trained.weights.h5 was trained with --fast for 3.9 M agent steps (52 minutes
on a 2-core CPU); its curve is save_graph/breakout_a3c_trained.png (.csv: the numbers).
"""
import argparse
import csv
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))                     # this folder's environment.py and turns.py

import h5py
import keras
import numpy as np
import tensorflow as tf

from environment import (ACTIONS, PREPROCESSINGS, STATE_SIZE, BookBreakout, ColourScreen, VectorBreakout,
                         make_games)
from turns import Turns, usable_cores

NAME = "breakout_a3c"
TRAINED = HERE / "save_model" / f"{NAME}_trained.weights.h5"
# Every thread traces its own copies of the same functions, once each. TensorFlow's retracing detector
# (keyed by source code) counts those copies as "retracing" and warns; they are not, so drop that message.
tf.get_logger().addFilter(lambda record: "triggered tf.function retracing" not in record.getMessage())

# ---- hyperparameters (the book's values) ----
THREADS = 8                 # actor-learner threads
ENVS_PER_THREAD = 1         # games each thread plays at once (the book: 1)
T_MAX = 20                  # steps per rollout before an update
GAMMA = 0.99                # discount factor
LEARNING_RATE = 2.5e-4      # RMSprop, shared by all threads
RMS_RHO = 0.99              # RMSprop decay
RMS_EPSILON = 1e-4          # the book's 0.01 was added outside the square root; Keras 3 adds ε inside it
ENTROPY_BETA = 0.01         # weight of the entropy bonus
VALUE_WEIGHT = 0.5          # weight of the value loss in the shared trunk's loss
MAX_GRAD_NORM = 40.0        # gradient clipping (global norm)
MAX_STEPS = 20_000_000      # agent steps over all threads (= 80 M emulator frames)
SAVE_EVERY_S = 600          # save the global weights every 10 minutes (and at exit)
ACTIVE_THREADS = None       # threads playing at once (None: one per CPU core); not in the book
MAX_EPISODE_STEPS = 10_000  # playing: a greedy agent can loop for ever without breaking a brick, so cap a game

# --fast: 4 actor-learners, all playing at once, each with 8 games in the emulator's C++ vector environment and
# one update per 5 steps × 8 games (lr 7e-4 and gradient norm 0.5 as in synchronous A2C); measured fastest to a
# good score on a 2-core CPU (BENCHMARKS.md). Options given explicitly win.
FAST = dict(threads=4, envs_per_thread=8, active_threads=4, t_max=5, lr=7e-4, max_grad_norm=0.5, rms_epsilon=1e-10)


def discount_rewards(rewards, dones, next_values, gamma=GAMMA):
    """k-step returns of one rollout of N games: R ← r + γR backwards in time, each game on its own, with R
    starting from 0 after a step that lost a life or ended that game and from V(next state) at the end.
    rewards, dones: (t, N); next_values: (N,). Returns (t, N) float32."""
    rewards = np.asarray(rewards, np.float32).reshape(len(rewards), -1)
    dones = np.asarray(dones, bool).reshape(rewards.shape)
    returns = np.zeros(rewards.shape, dtype=np.float32)
    running = np.asarray(next_values, np.float32).reshape(-1) * np.ones(rewards.shape[1], np.float32)
    for i in reversed(range(len(rewards))):
        running = rewards[i] + gamma * running * ~dones[i]
        returns[i] = running
    return returns


def a3c_losses(policy, value, actions, returns, entropy_beta=ENTROPY_BETA):
    """Policy loss, value loss, mean entropy and advantages of one rollout (see the docstring at the top).
    policy: (n, 3) probabilities, value: (n,), actions: (n,) ints, returns: (n,) k-step returns."""
    advantages = returns - value
    taken = tf.gather(policy, actions, axis=1, batch_dims=1)
    log_taken = tf.math.log(taken + 1e-10)
    entropy = -tf.reduce_sum(policy * tf.math.log(policy + 1e-10), axis=1)
    policy_loss = tf.reduce_mean(-log_taken * tf.stop_gradient(advantages) - entropy_beta * entropy)
    value_loss = tf.reduce_mean(tf.square(advantages))
    return policy_loss, value_loss, tf.reduce_mean(entropy), advantages


# ---- the network: the book's shared trunk with a policy head and a value head ----
def build_model(precision="float32"):
    """84×84×4 uint8 → /255 → Conv(16, 8×8, 4) → Conv(32, 4×4, 2) → Flatten → Dense(256)
    → π(a|s): softmax over 3 actions, and V(s): linear. With precision "bfloat16" the trunk computes in
    bfloat16 on float32 weights; the two heads stay float32 (so do the losses and RMSprop)."""
    hidden = dtype_policy(precision)
    state = keras.Input(shape=STATE_SIZE, dtype="uint8")
    x = keras.layers.Rescaling(1.0 / 255.0, dtype=hidden)(state)
    x = keras.layers.Conv2D(16, 8, strides=4, activation="relu", dtype=hidden)(x)
    x = keras.layers.Conv2D(32, 4, strides=2, activation="relu", dtype=hidden)(x)
    x = keras.layers.Flatten(dtype=hidden)(x)
    x = keras.layers.Dense(256, activation="relu", dtype=hidden)(x)
    policy = keras.layers.Dense(len(ACTIONS), activation="softmax", name="policy", dtype="float32")(x)
    value = keras.layers.Dense(1, name="value", dtype="float32")(x)
    return keras.Model(state, [policy, value], name="actor_critic")


# ---- saving and loading: the weights file also holds the facts about them ----
def save_weights(model, path, optimizer=None, **facts):
    """The weights, the facts about them (preprocessing, steps, games, seconds) and the optimiser's state (so
    that --load goes on where training stopped) in ONE Keras weights file, written atomically: after a kill
    the file on disk is the old one or the new one, never a mismatched pair."""
    def write(tmp):
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as file:
            file.attrs.update({f"a3c_{key}": value for key, value in facts.items()})
            if optimizer is not None:
                group = file.create_group("a3c_optimizer")
                for index, variable in enumerate(optimizer.variables):
                    group.create_dataset(str(index), data=np.asarray(variable))
    atomic_write(path, write)


def load_optimizer(optimizer, path):
    """Restore the optimiser's state saved with the weights (RMSprop's running averages); False if absent."""
    with h5py.File(path, "r") as file:
        if "a3c_optimizer" not in file:
            return False
        values = [file["a3c_optimizer"][str(index)][()] for index in range(len(file["a3c_optimizer"]))]
    if [v.shape for v in values] != [tuple(v.shape) for v in optimizer.variables]:
        return False
    for variable, value in zip(optimizer.variables, values):
        variable.assign(value)
    return True


def weights_facts(path):
    """The facts save_weights stored (weights from before they were stored: the book's preprocessing)."""
    try:
        with h5py.File(path, "r") as file:
            facts = {key[4:]: file.attrs[key] for key in file.attrs if key.startswith("a3c_")}
    except OSError:
        facts = {}                        # load_weights reports the unreadable file
    facts.setdefault("preprocessing", "book")
    facts["preprocessing"] = str(facts["preprocessing"])
    return facts


NEVER = type("Never", (), {"requested": False})()   # a stop flag that never stops (tests, benchmarks)


# ---- the global agent: network, optimiser, counters, summaries, saving ----
class A3CAgent:
    def __init__(self, threads=THREADS, t_max=T_MAX, learning_rate=LEARNING_RATE, save_dir=HERE,
                 seed=None, verbose=True, active_threads=ACTIVE_THREADS, envs_per_thread=ENVS_PER_THREAD,
                 max_grad_norm=MAX_GRAD_NORM, rms_epsilon=RMS_EPSILON, precision="float32", stop=NEVER):
        # Hyperparameters of the run.
        self.threads = threads
        if active_threads is not None and active_threads < 1:
            raise ValueError(f"active_threads must be at least 1, got {active_threads}")
        self.active_threads = min(threads, active_threads or usable_cores())
        self.envs_per_thread = envs_per_thread
        self.preprocessing = "book" if envs_per_thread == 1 else "ale-vector"
        self.t_max = t_max
        self.gamma = GAMMA
        self.entropy_beta = ENTROPY_BETA
        self.value_weight = VALUE_WEIGHT
        self.max_grad_norm = max_grad_norm
        self.learning_rate = learning_rate
        self.rms_epsilon = rms_epsilon
        self.precision = precision              # the networks' maths: "float32" or "bfloat16" (weights: float32)
        self.seed = seed
        self.verbose = verbose
        self.stop = stop

        # The global network and the one optimiser all threads share (so RMSprop's statistics are shared, as
        # in the paper). Everything Keras builds is built here, in the main thread, before any worker starts.
        self.model = build_model(precision)
        self.optimizer = keras.optimizers.RMSprop(learning_rate=learning_rate, rho=RMS_RHO, epsilon=rms_epsilon)
        self.optimizer.build(self.model.trainable_variables)

        # Shared state of the threads. `lock` serialises global updates (and saving); `log_lock` keeps one
        # thread at a time in the episode counter, the printout and the TensorBoard writer.
        self.lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.turns = Turns(self.active_threads)   # how many workers play at once (see turns.py)
        self.stop_event = threading.Event()
        self.episode = 0
        self.total_steps = 0
        self.updates = 0
        self.seconds_before = 0.0               # training seconds of the run(s) this one continues
        self.scores = []                        # (episode, total steps, score, duration, thread, seconds)

        self.save_dir = Path(save_dir)
        self.model_path = self.save_dir / "save_model" / f"{NAME}.weights.h5"
        self.best_path = self.save_dir / "save_model" / f"{NAME}_best.weights.h5"
        self.graph_path = self.save_dir / "save_graph" / f"{NAME}.png"
        self.log_path = self.save_dir / "save_graph" / f"{NAME}.csv"
        self.writer = None
        self.start_time = time.perf_counter()

    # Load weights to start from (--load), and continue the curve of a previous run in the same --save-dir.
    def load_model(self, path):
        facts = weights_facts(path)
        load_weights(self.model, path, f"train one with: python {Path(__file__).name}")
        if facts["preprocessing"] != self.preprocessing:
            sys.exit(f"error: {path} was trained with the {facts['preprocessing']} preprocessing; continue it "
                     f"with --envs-per-thread {'1' if facts['preprocessing'] == 'book' else '2 or more'}")
        if not load_optimizer(self.optimizer, path) and self.verbose:
            print("note: no optimiser state in this file: RMSprop starts its running averages afresh")
        if self.log_path.exists():
            self.scores = read_curve(self.log_path, int(facts.get("episodes", 1 << 62)))
        # The weights file's facts count; a file from before they were stored falls back on the curve.
        episode, total_steps, _, _, _, seconds = self.scores[-1] if self.scores else (0, 0, 0, 0, 0, 0.0)
        self.episode = episode
        self.total_steps = int(facts.get("total_steps", total_steps))
        self.seconds_before = float(facts.get("seconds", seconds))

    def seconds(self):
        return self.seconds_before + time.perf_counter() - self.start_time

    # Called by a worker at the end of a game: count it (thread-safely), print one line, write summaries.
    def end_episode(self, thread, score, duration, avg_max_prob):
        with self.log_lock:
            self.episode += 1
            episode, total_steps, seconds = self.episode, self.total_steps, self.seconds()
            self.scores.append((episode, total_steps, score, duration, thread, round(seconds, 1)))
            steps_per_s = (total_steps - self.start_steps) / max(time.perf_counter() - self.start_time, 1e-9)
            if self.verbose:
                print(f"episode: {episode} | score: {score:.1f} | avg max prob: {avg_max_prob:.3f} | "
                      f"duration: {duration} | thread: {thread} | total steps: {total_steps} | "
                      f"steps/s: {steps_per_s:.0f}", flush=True)
            if self.writer is not None:
                log_scalars(self.writer, episode, **{"Total Reward/Episode": score,
                                                     "Average Max Prob/Episode": avg_max_prob,
                                                     "Duration/Episode": duration, "Steps per Second": steps_per_s})

    def recent_mean(self, n=100):
        with self.log_lock:
            scores = [row[2] for row in self.scores[-n:]]
        return (float(np.mean(scores)) if scores else float("-inf")), len(scores)

    # Save the curve (CSV, graph), then the global weights with their facts (under the update lock, so no
    # update is half-applied). The weights go last: after a kill the CSV may hold games the weights have not
    # seen, and load_model drops those.
    def save_model(self, path=None):
        path = Path(path or self.model_path)
        with self.log_lock:
            rows = list(self.scores)
        atomic_write(self.log_path, lambda tmp: write_curve(tmp, rows))
        if rows:
            save_graph(self.graph_path, [row[1] for row in rows], [row[2] for row in rows],
                       "agent steps (all threads; 1 step = 4 frames)", "Breakout A3C")
        with self.lock:
            save_weights(self.model, path, self.optimizer, preprocessing=self.preprocessing,
                         total_steps=self.total_steps,
                         episodes=len(rows) and rows[-1][0], seconds=round(self.seconds(), 1),
                         threads=self.threads, envs_per_thread=self.envs_per_thread)

    def stopping(self):
        return self.stop.requested or self.stop_event.is_set()

    # Start the actor-learner threads and look after them from the main thread until the step budget is
    # spent (or Ctrl-C): save every SAVE_EVERY_S seconds and keep the best global weights so far.
    def train(self, max_steps=MAX_STEPS, max_episodes=None, save_every=SAVE_EVERY_S, summaries=True):
        for folder in ("save_model", "save_graph", "summary"):
            ensure_writable(self.save_dir / folder)
        if summaries:
            self.writer = tf.summary.create_file_writer(str(self.save_dir / "summary" / NAME))
            with self.writer.as_default(step=0):
                tf.summary.text("hyperparameters", hyperparameter_table(self))
        workers = self.workers = []
        for index in range(self.threads):           # builds and compiles every local network (seconds)
            if self.stop.requested:
                return None                         # stopped before training started
            workers.append(Agent(self, index, max_steps, max_episodes))
        self.start_time, self.start_steps = time.perf_counter(), self.total_steps
        for worker in workers:
            worker.start()
        last_save, best_mean = time.perf_counter(), self.recent_mean()[0]
        while any(worker.is_alive() for worker in workers) and not self.stopping():
            self.stop_event.wait(timeout=0.2)
            if time.perf_counter() - last_save >= save_every:
                self.save_model()
                last_save = time.perf_counter()
                mean, count = self.recent_mean()
                if count >= 20 and mean > best_mean:
                    best_mean = mean
                    self.save_model(self.best_path)
                if self.verbose:
                    print(f"saved {self.model_path} (mean of last {count} scores: {mean:.1f})", flush=True)
        interrupted = self.stop.requested
        if interrupted:
            print("\ninterrupted: stopping the threads and saving ...", flush=True)
        self.stop_event.set()
        for worker in workers:
            worker.join()
        self.train_seconds = time.perf_counter() - self.start_time
        errors = [worker.error for worker in workers if worker.error is not None]
        self.save_model()
        if self.writer is not None:
            self.writer.flush()
        elapsed = self.train_seconds
        if self.verbose:
            print(f"{self.total_steps - self.start_steps} steps in {elapsed:.0f} s "
                  f"({(self.total_steps - self.start_steps) / max(elapsed, 1e-9):.0f} steps/s over "
                  f"{self.threads} threads × {self.envs_per_thread} games, {self.active_threads} at a time)")
            print(f"weights saved to {self.model_path}")
            if self.scores:
                print(f"graph saved to {self.graph_path}")
            if self.writer is not None:
                print(f"summaries in {self.save_dir / 'summary' / NAME} "
                      f"(tensorboard --logdir {self.save_dir / 'summary'})")
        if errors:
            raise errors[0]
        return interrupted


# ---- one actor-learner thread: its own game(s), its own local network ----
class Agent(threading.Thread):
    def __init__(self, global_agent, index, max_steps=MAX_STEPS, max_episodes=None):
        super().__init__(name=f"actor-learner-{index}", daemon=True)
        self.global_agent = global_agent
        self.index = index
        self.max_steps = max_steps
        self.max_episodes = max_episodes
        self.t_max = global_agent.t_max
        self.n_games = global_agent.envs_per_thread
        self.error = None
        self.rollouts = 0                     # global updates this thread made

        # The local copy θ' and its compiled functions, built here, i.e. in the main thread.
        self.local_model = build_model(global_agent.precision)
        self.build_functions()
        self.update_local_model()

        # Rollout memory: t_max steps × N games, preallocated, reused every rollout.
        self.states = np.zeros((self.t_max, self.n_games, *STATE_SIZE), dtype=np.uint8)
        self.actions = np.zeros((self.t_max, self.n_games), dtype=np.int32)
        self.rewards = np.zeros((self.t_max, self.n_games), dtype=np.float32)
        self.dones = np.zeros((self.t_max, self.n_games), dtype=bool)
        self.n_samples = 0
        seed = None if global_agent.seed is None else global_agent.seed + 1000 * index
        self.rng = np.random.default_rng(seed)
        self.env_seed = seed

    # Three compiled functions per thread: act, compute gradients at θ', and (under the lock) apply them to θ
    # and copy θ back into θ'. Tensors in, tensors out; traced once here.
    def build_functions(self):
        local, global_model = self.local_model, self.global_agent.model
        optimizer, agent = self.global_agent.optimizer, self.global_agent
        state_spec = tf.TensorSpec((None, *STATE_SIZE), tf.uint8)

        # XLA (jit_compile) halves the cost of acting on one game and of the update; acting on a batch of
        # games and the gradient step are faster without it (measured here).
        @tf.function(input_signature=[state_spec], jit_compile=self.n_games == 1)
        def act(states):
            policy, value = local(states, training=False)
            return policy, value[:, 0]

        @tf.function(input_signature=[state_spec, tf.TensorSpec((None,), tf.int32),
                                      tf.TensorSpec((None,), tf.float32)])
        def compute_gradients(states, actions, returns):
            with tf.GradientTape() as tape:
                policy, value = local(states, training=True)
                policy_loss, value_loss, entropy, _ = a3c_losses(policy, value[:, 0], actions, returns,
                                                                 agent.entropy_beta)
                loss = policy_loss + agent.value_weight * value_loss
            grads = tape.gradient(loss, local.trainable_variables)
            grads, _ = tf.clip_by_global_norm(grads, agent.max_grad_norm)
            return grads

        @tf.function(input_signature=[[tf.TensorSpec(v.shape, v.dtype) for v in local.trainable_variables]],
                     jit_compile=True)
        def apply_and_sync(grads):
            optimizer.apply_gradients(zip(grads, global_model.trainable_variables))
            for local_variable, global_variable in zip(local.variables, global_model.variables):
                local_variable.assign(global_variable)

        @tf.function
        def sync():
            for local_variable, global_variable in zip(local.variables, global_model.variables):
                local_variable.assign(global_variable)

        # Keep the traced (concrete) functions: calling them skips tf.function's argument matching, which is
        # Python work done under the interpreter lock on every step.
        self.act = act.get_concrete_function()
        self.compute_gradients = compute_gradients.get_concrete_function()
        self.apply_and_sync = apply_and_sync.get_concrete_function()
        self.sync = sync
        self.act(tf.zeros((self.n_games, *STATE_SIZE), tf.uint8))   # compile act's XLA code now

    # Sample one action per game from the local policy π(a|s; θ'), all games in one compiled call.
    def get_action(self, states):
        policy = self.act(tf.constant(states))[0].numpy()
        cumulative = np.cumsum(policy, axis=1)
        draw = self.rng.random((len(policy), 1)) * cumulative[:, -1:]
        actions = np.minimum((draw > cumulative).sum(axis=1), len(ACTIONS) - 1)
        return actions, policy

    # Remember one step of the rollout (one sample per game).
    def append_sample(self, states, actions, rewards, dones):
        self.states[self.n_samples] = states
        self.actions[self.n_samples] = actions
        self.rewards[self.n_samples] = rewards
        self.dones[self.n_samples] = dones
        self.n_samples += 1

    # θ' ← θ, one compiled assign of every variable (set_weights would cost milliseconds per call).
    def update_local_model(self):
        self.sync()

    # End of a rollout: k-step returns per game, gradients at θ', one update of θ under the lock, then θ' ← θ.
    def train_model(self, next_states):
        n = self.n_samples
        if self.dones[n - 1].all():
            next_values = np.zeros(self.n_games, np.float32)   # every game just lost a life: no bootstrap
        else:
            next_values = self.act(tf.constant(next_states))[1].numpy()
        returns = discount_rewards(self.rewards[:n], self.dones[:n], next_values, self.global_agent.gamma)
        grads = self.compute_gradients(tf.constant(self.states[:n].reshape(-1, *STATE_SIZE)),
                                       tf.constant(self.actions[:n].reshape(-1)), tf.constant(returns.reshape(-1)))
        with self.global_agent.lock:
            self.apply_and_sync(grads)
            self.global_agent.total_steps += n * self.n_games
            self.global_agent.updates += 1
        self.rollouts += 1
        self.n_samples = 0

    def budget_left(self):
        agent = self.global_agent
        if agent.stopping() or agent.total_steps >= self.max_steps:
            return False
        return self.max_episodes is None or agent.episode < self.max_episodes

    def run(self):
        try:
            self.play_and_learn()
        except Exception as error:            # reported by the main thread, which stops the others
            self.error = error
            self.global_agent.stop_event.set()

    def play_and_learn(self):
        turns = self.global_agent.turns
        turns.acquire()                       # wait for a turn to play (see Turns); given back at the end
        games = None
        try:
            if not self.budget_left():        # the budget ran out while this thread waited
                return
            games = make_games(self.n_games, seed=self.env_seed, rng=self.rng,
                               num_threads=max(1, usable_cores() // self.global_agent.active_threads))
            states = games.reset()
            sum_max_prob = np.zeros(self.n_games)
            while self.budget_left():
                actions, policy = self.get_action(states)
                next_states, rewards, dead, finished = games.step(actions)
                sum_max_prob += policy.max(axis=1)
                # A lost life is terminal for learning; the score keeps the real (unclipped) rewards.
                self.append_sample(states, actions, np.clip(rewards, -1.0, 1.0), dead)
                for game, score, duration in finished:
                    self.global_agent.end_episode(self.index, score, duration, sum_max_prob[game] / duration)
                    sum_max_prob[game] = 0.0
                # The book's single game also ends its rollout at a lost life.
                if self.n_samples == self.t_max or (self.n_games == 1 and dead[0]):
                    self.train_model(next_states)
                    # Another waiting thread gets to play; back on turn, start again from the newest θ.
                    if turns.pass_on():
                        with self.global_agent.lock:
                            self.update_local_model()
                states = next_states
        finally:
            turns.release()                   # first, so that no error below can keep the others waiting
            if games is not None:
                games.close()


# ---- watching: play the trained agent greedily, with the preprocessing it was trained with ----
def play(model, episodes, preprocessing="book", render=False, seed=None, max_episode_steps=MAX_EPISODE_STEPS,
         sample=False, stop=NEVER, frames=None):
    """Play `episodes` games with argmax_a π(a|s) (or a ~ π with sample=True); print one line a game and
    return the scores (the real game score over all five lives). `frames`, when given, receives the colour
    screen after every step (--record)."""
    rng = np.random.default_rng(seed)
    policy_of = tf.function(lambda states: model(states, training=False)[0],
                            input_signature=[tf.TensorSpec((None, *STATE_SIZE), tf.uint8)])
    screen = None
    if preprocessing == "book":
        render_mode = "rgb_array" if frames is not None else "human" if render else None
        games = BookBreakout(seed=seed, rng=rng, render_mode=render_mode)
    else:
        if render or frames is not None:  # a second emulator plays the same game in colour (same seed, same actions)
            seed = int(rng.integers(2 ** 31)) if seed is None else seed
            try:
                screen = ColourScreen(seed, window=render, frames=frames)
            except Exception as error:    # tkinter missing, or DISPLAY names a screen that does not answer
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                print(f"cannot open a window ({reason}): running headless")
                screen = None if frames is None else ColourScreen(seed, window=False, frames=frames)
        games = VectorBreakout(1, seed=seed)
    scores = []
    states = games.reset()
    steps = 0
    while len(scores) < episodes and not stop.requested:
        policy = policy_of(tf.constant(states)).numpy()
        if sample:
            actions = np.array([rng.choice(len(p), p=p / p.sum()) for p in policy])
        else:
            actions = policy.argmax(axis=1)
        states, _, _, finished = games.step(actions)
        if screen is not None:
            screen.step(actions)
        elif frames is not None:
            frames.append(games.env.render())
        steps += 1
        if not finished and steps >= max_episode_steps:    # stuck: count the game as it stands, start anew
            finished = [(0, float(games.scores[0]), steps)]
            print(f"(game {len(scores) + 1} stopped at the {max_episode_steps}-step cap)")
            if screen is None:
                states = games.reset()
            else:                                           # a new seed for both emulators, to stay in step
                new_seed = int(rng.integers(2 ** 31))
                states = games.reset(seed=new_seed)
                screen.reset(new_seed)
        for _, score, duration in finished:
            scores.append(score)
            print(f"episode: {len(scores)} | score: {score:.1f} | steps: {duration}", flush=True)
            steps = 0
    games.close()
    if screen is not None:
        screen.close()
    return scores


def hyperparameter_table(agent):
    rows = [("threads", agent.threads), ("games per thread", agent.envs_per_thread),
            ("active threads", agent.active_threads), ("preprocessing", agent.preprocessing),
            ("t_max", agent.t_max), ("gamma", agent.gamma), ("learning rate", agent.learning_rate),
            ("RMSprop rho", RMS_RHO), ("RMSprop epsilon", agent.rms_epsilon),
            ("entropy beta", agent.entropy_beta), ("value weight", agent.value_weight),
            ("max grad norm", agent.max_grad_norm), ("seed", agent.seed)]
    return "| hyperparameter | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


CURVE_COLUMNS = ["episode", "total_steps", "score", "duration", "thread", "seconds"]


def write_curve(path, rows):
    with open(path, "w", newline="") as file:
        out = csv.writer(file)
        out.writerow(CURVE_COLUMNS)
        out.writerows(rows)


def read_curve(path, up_to_episode):
    """The rows of a saved curve up to the given game (a curve from before `seconds` was kept gets blanks)."""
    try:
        with open(path, newline="") as file:
            rows = []
            for r in csv.DictReader(file):
                seconds = r.get("seconds") or "nan"
                rows.append((int(r["episode"]), int(r["total_steps"]), float(r["score"]), int(r["duration"]),
                             int(r["thread"]), float(seconds)))
    except (OSError, KeyError, ValueError, TypeError) as error:
        sys.exit(f"error: cannot read the training curve {path} ({type(error).__name__}: {error}); "
                 "move it away to start a new curve")
    return [row for row in rows if row[0] <= up_to_episode]


def one_thread_per_kernel(threads=1):
    """Run each TensorFlow kernel on the Python thread that called it (TensorFlow's intra-op pool of 1 thread).
    The kernels here are small; handing them to a pool of helper threads costs more than it gains, and the
    workers already keep the cores busy. Must run before TensorFlow starts (before the first model is built);
    if it already has, its pools are kept as they are and this returns False."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        return True
    except RuntimeError:
        return False


# ---- plumbing: the same text in every chapter that has it (tests/test_plumbing.py checks); safe to skip ----
def atomic_write(path, write):
    """Call write(tmp) on a temp file beside `path`, then move it into place: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")   # keeps the suffix (.weights.h5 / .png / .csv)
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_writable(folder):
    """Fail before training, in one line, if artefacts could not be saved."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        sys.exit(f"error: cannot write to {folder}: {error.strerror}")


def load_weights(model, path, how_to_make):
    """Load Keras weights, or exit with one line naming the file and how to make one."""
    try:
        model.load_weights(path)
    except Exception as error:            # missing, truncated, wrong architecture
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        # A wrong architecture: Keras says "... for object <Conv2D ...>:" and the reason on the next line.
        reason = lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]
        reason = reason.split(" Target variable:")[0]          # not the dump of the variable's values
        sys.exit(f"error: cannot load weights from {path} ({reason}); {how_to_make}")


class StopFlag:
    """Ctrl-C (SIGINT) and `kill` (SIGTERM) only raise this flag; every loop looks at it between steps, then
    stops, and the run saves once and exits 130. A second signal while saving changes nothing (the save goes
    on). No KeyboardInterrupt is ever raised: one raised inside a TensorFlow call or a garbage-collection
    callback can be lost (training goes on) or crash the process."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGINT, self.request)
        signal.signal(signal.SIGTERM, self.request)

    def request(self, signum, frame):
        self.requested = True


def display_available():
    """Is there a screen to draw on? On Linux a window needs an X or Wayland display (SSH sessions, servers
    and WSL without WSLg have none); Windows and macOS always have one."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def window_refused():
    """None when a window can open on this display, else the reason in a few words. ALE's own window (SDL) ends the
    whole process with a crash where DISPLAY names a screen that does not answer; Tk fails politely, so ask it."""
    try:
        import tkinter
        tkinter.Tk().destroy()
    except ImportError:
        return None                       # no Tk to ask: let the window try
    except tkinter.TclError as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else "TclError"
    return None


def log_scalars(writer, step, **scalars):
    """TensorBoard scalars, one tf.summary.scalar each (view them: tensorboard --logdir <save dir>/summary)."""
    with writer.as_default(step=step):
        for name, value in scalars.items():
            tf.summary.scalar(name, value)


def save_graph(path, x, scores, xlabel, title, window=100):
    """The scores (dots) and their running mean over the last `window` (line), as a PNG written atomically.
    matplotlib's Agg backend draws without a window."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x, scores = np.asarray(x, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.plot(x, scores, ".", markersize=2, alpha=0.5, label="score")
    window = min(window, len(scores))
    if window > 1:
        mean = np.convolve(scores, np.ones(window) / window, mode="valid")
        axes.plot(x[window - 1:], mean, "r-", label=f"mean of the last {window}")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("score")
    axes.set_title(title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=80))
    plt.close(figure)


def cpu_flags():
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo (an empty set elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def visible_gpus():
    """[(name, (major, minor) compute capability or None)] for each GPU that TensorFlow sees."""
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append((details.get("device_name", gpu.name), details.get("compute_capability")))
    return gpus


def bfloat16_hardware(flags, gpus):
    """(True, why) where this hardware does bfloat16 matrix maths faster than float32, else (False, why).
    TensorFlow runs the networks on the first GPU when there is one; otherwise on the CPU."""
    if gpus:
        name, capability = gpus[0]
        if capability is not None and tuple(capability) >= (8, 0):
            return True, f"the GPU ({name}, compute capability {capability[0]}.{capability[1]}) has bfloat16 tensor cores"
        return False, f"the GPU ({name}) has no bfloat16 tensor cores (those need compute capability 8.0 or newer)"
    if "amx_bf16" in flags:
        return True, "the CPU has AMX bfloat16 units (amx_bf16)"
    if "avx512_bf16" in flags:
        return False, ("the CPU has AVX-512 BF16 but no AMX, and there bfloat16 measured slower than float32 "
                       "(see BENCHMARKS.md)")
    return False, "the CPU has no bfloat16 units: bfloat16 would be emulated, and slower"


def choose_precision(requested, hardware, auto_bfloat16=True):
    """(precision, why) for `--precision requested` on `hardware` = bfloat16_hardware(...). auto_bfloat16 says
    whether this chapter's network gains from bfloat16 at all where the hardware has it."""
    fast, why = hardware
    if requested != "auto":
        return requested, f"asked for; {why}"
    if fast and not auto_bfloat16:
        return "float32", f"auto: {why}, but this network measured no faster in bfloat16"
    return ("bfloat16" if fast else "float32"), f"auto: {why}"


def dtype_policy(precision):
    """Keras dtype policy of the hidden layers: bfloat16 maths on float32 weights, or plain float32."""
    return "mixed_bfloat16" if precision == "bfloat16" else "float32"


def gif_path(text):
    """--record FILE.gif: a path ending in .gif (the folder is made, and checked, before the run starts)."""
    path = Path(text)
    if path.suffix.lower() != ".gif":
        raise argparse.ArgumentTypeError(f"must be a file name ending in .gif, got {text!r}")
    return path


def write_gif(path, frames, seconds_per_frame, max_frames=400):
    """An animated, looping GIF of `frames` (Pillow images or H×W×3 uint8 arrays), written atomically. A long
    recording keeps every k-th frame (each shown k times longer, so it plays at the real pace) to stay within
    `max_frames`; each frame gets a palette of its own colours."""
    from PIL import Image                               # Pillow comes with matplotlib
    step = max(1, -(-len(frames) // max_frames))
    images = []
    for frame in frames[::step]:
        image = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame, dtype=np.uint8))
        images.append(image.convert("RGB").quantize(colors=64))
    duration = max(20, round(1000 * seconds_per_frame * step))    # milliseconds per frame
    atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                  duration=duration, loop=0, optimize=True))
    print(f"recorded {len(images)} frames to {path}")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not 0.0 < value < float("inf"):                     # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text}")
    return value


# ---- arguments, seeding, watching from the command line ----
def parse_args(argv=None):
    book = dict(threads=THREADS, envs_per_thread=ENVS_PER_THREAD, active_threads=ACTIVE_THREADS, t_max=T_MAX,
                lr=LEARNING_RATE, max_grad_norm=MAX_GRAD_NORM, rms_epsilon=RMS_EPSILON)
    parser = argparse.ArgumentParser(description="Train A3C on Atari Breakout (actor-learner threads).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)

    def preset(key):                      # options whose default depends on --fast
        return f"(default: {book[key]}; with --fast: {FAST[key]})"
    fast = ", ".join(f"--{key.replace('_', '-')} {value}" for key, value in FAST.items())
    parser.add_argument("--fast", action="store_true",
                        help=f"the fast preset for a CPU: {fast} (options given explicitly win)")
    parser.add_argument("--threads", type=positive_int, default=argparse.SUPPRESS,
                        help=f"actor-learner threads {preset('threads')}")
    parser.add_argument("--envs-per-thread", type=positive_int, default=argparse.SUPPRESS,
                        help="games each thread plays at once; above 1 they run in ALE's vector environment with "
                             f"its preprocessing {preset('envs_per_thread')}")
    parser.add_argument("--active-threads", type=positive_int, default=argparse.SUPPRESS,
                        help=f"threads that play at the same time, the others wait their turn; None: one per CPU "
                             f"core, here {usable_cores()} {preset('active_threads')}")
    parser.add_argument("--t-max", type=positive_int, default=argparse.SUPPRESS,
                        help=f"steps per rollout before an update {preset('t_max')}")
    parser.add_argument("--lr", type=positive_float, default=argparse.SUPPRESS,
                        help=f"RMSprop learning rate {preset('lr')}")
    parser.add_argument("--max-grad-norm", type=positive_float, default=argparse.SUPPRESS,
                        help=f"clip the gradients to this global norm {preset('max_grad_norm')}")
    parser.add_argument("--rms-epsilon", type=positive_float, default=argparse.SUPPRESS,
                        help=f"RMSprop epsilon, inside the square root {preset('rms_epsilon')}")
    parser.add_argument("--max-steps", type=positive_int, default=MAX_STEPS,
                        help="stop when the agent steps of all threads reach this (1 step = 4 frames; "
                             "a run resumed with --load counts on)")
    parser.add_argument("--episodes", type=positive_int, default=None,
                        help="stop after this many games over all threads (None: no limit); with --play, "
                             "games to play (None: 10)")
    parser.add_argument("--save-every", type=positive_float, default=SAVE_EVERY_S,
                        help="seconds between checkpoints of the global weights")
    parser.add_argument("--seed", type=int, default=None, help="random seed (None: a different run each time)")
    parser.add_argument("--save-dir", type=Path, default=argparse.SUPPRESS,
                        help="artefacts go to DIR/save_model, DIR/save_graph, DIR/summary "
                             "(default: this script's folder)")
    parser.add_argument("--load", type=Path, default=None,
                        help="start from these weights (with --play: play them); the curve in --save-dir goes on")
    parser.add_argument("--play", action="store_true",
                        help=f"do not train: play save_model/{TRAINED.name} (or --load) greedily")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="with --play: show the game (training never renders: threads must not draw)")
    add_precision_argument(parser)
    add_record_argument(parser)
    args = parser.parse_args(argv)
    if args.record is not None and not args.play:
        parser.error("argument --record: records what --play plays; add --play")
    for key, value in (FAST if args.fast else book).items():
        if not hasattr(args, key):
            setattr(args, key, value)
    if not hasattr(args, "save_dir"):
        args.save_dir = HERE
    return args


PRECISIONS = ("auto", "float32", "bfloat16")
# The A3C network is small: its updates cost little maths and much overhead, so bfloat16 makes them no faster
# even where the hardware has it (BENCHMARKS.md); auto stays float32 everywhere.
AUTO_BFLOAT16 = False


def add_record_argument(parser):
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif",
                        help="save the games played as an animated GIF, in colour (no window needed; "
                             "--episodes 1 keeps it short)")


def add_precision_argument(parser):
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="the networks' maths: bfloat16 (weights stay float32) or float32; auto is float32, "
                             "because this small network measured no faster in bfloat16")


def announce_precision(requested):
    """Decide float32 or bfloat16 and say which, and why, in the run's first lines."""
    precision, why = choose_precision(requested, bfloat16_hardware(cpu_flags(), visible_gpus()), AUTO_BFLOAT16)
    print(f"precision: {precision} ({why})", flush=True)
    return precision


def seed_everything(seed):
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        keras.utils.set_random_seed(seed)


def play_main(load, episodes, render, seed, max_episode_steps=MAX_EPISODE_STEPS, sample=False, precision="auto",
              record=None):
    """--play here and play_a3c_model.py: load the weights and play them with their preprocessing; with
    `record` (a .gif path) also save the games' colour screens as an animated GIF."""
    stop = StopFlag()
    seed_everything(seed)
    if render and not display_available():
        print("no display found: running headless (pass --render on a machine with a display)")
        render = False
    elif render and (refused := window_refused()):
        print(f"cannot open a window ({refused}): running headless")
        render = False
    if record is not None:
        ensure_writable(record.parent.resolve())
    model = build_model(announce_precision(precision))
    facts = weights_facts(load)
    load_weights(model, load, f"train them with: python {Path(__file__).name}")
    if facts["preprocessing"] not in PREPROCESSINGS:
        sys.exit(f"error: {load} names an unknown preprocessing {facts['preprocessing']!r}")
    print(f"playing {load} with the {facts['preprocessing']} preprocessing it was trained with")
    frames = None if record is None else []
    scores = play(model, episodes, facts["preprocessing"], render, seed, max_episode_steps, sample, stop, frames)
    if frames:
        write_gif(record, frames, seconds_per_frame=4 / 60)            # an agent step is 4 frames at 60 Hz
    if stop.requested:
        print("interrupted")
        if not scores:
            sys.exit(130)
    print(f"mean score: {np.mean(scores):.1f} over {len(scores)} episodes")
    if stop.requested:
        sys.exit(130)


# ---- training ----
def main(argv=None):
    args = parse_args(argv)
    if args.play:
        return play_main(args.load or TRAINED, args.episodes or 10, args.render, args.seed,
                         precision=args.precision, record=args.record)
    stop = StopFlag()
    # Seeding, in one place. Each thread draws its actions from its own numpy generator (seed + 1000·index),
    # so the threads do not share random state; thread scheduling still makes runs differ.
    seed_everything(args.seed)
    one_thread_per_kernel()
    precision = announce_precision(args.precision)
    agent = A3CAgent(threads=args.threads, t_max=args.t_max, learning_rate=args.lr, save_dir=args.save_dir,
                     seed=args.seed, active_threads=args.active_threads, envs_per_thread=args.envs_per_thread,
                     max_grad_norm=args.max_grad_norm, rms_epsilon=args.rms_epsilon, precision=precision,
                     stop=stop)
    if args.load:
        agent.load_model(args.load)
    print(f"{args.threads} threads × {args.envs_per_thread} games ({agent.preprocessing} preprocessing), "
          f"t_max {args.t_max}, lr {args.lr}, max grad norm {args.max_grad_norm}", flush=True)
    interrupted = None if stop.requested else agent.train(max_steps=args.max_steps, max_episodes=args.episodes,
                                                          save_every=args.save_every)
    if interrupted is None:
        print("interrupted before training started: nothing saved", file=sys.stderr)
    if interrupted is not False:
        sys.exit(130)


if __name__ == "__main__":
    main()
