"""Breakout with A3C, the Asynchronous Advantage Actor-Critic (Keras 3 on TensorFlow).

Mnih et al., "Asynchronous Methods for Deep Reinforcement Learning", ICML 2016.

One GLOBAL network θ (a shared convolutional trunk with a policy head π(a|s) and a value head V(s)) and
several actor-learner threads. Each thread has its own Breakout and its own LOCAL copy θ' of the network:

    play with a ~ π(a|s; θ') until t_max steps have passed or a life is lost or the game ends
    R = 0                      if the last step lost a life or ended the game
        V(s_next; θ')          otherwise (bootstrap from the state AFTER the last step)
    for i = last ... first:    R   = r_i + γ R                 (k-step return; r clipped to [-1, 1])
                               A_i = R − V(s_i; θ')            (advantage)
    policy loss = mean_i [ −log π(a_i|s_i; θ') · A_i  −  β · H(π(·|s_i; θ')) ]    H = −Σ_a π log π
    value loss  = mean_i [ (R_i − V(s_i; θ'))² ]
    θ  ← RMSprop step on the gradients of (policy loss + ½ · value loss) taken at θ'   (one thread at a time)
    θ' ← θ                                                                         (one compiled assign)

The advantage A is a constant in the policy loss (no gradient flows through it into the value head). The
−β·H term rewards uncertainty, which keeps the threads exploring.

What differs from the book's 2017 code (BOOK_SPEC "Decision" lines):
- The book bootstrapped from V of the wrong state and broadcast the critic loss into an N×N matrix; here R is
  bootstrapped from V(next state) and the value loss is a plain mean over the rollout.
- After a lost life the book rebuilt the frame history with a reshape that scrambled the pixels; here the
  history restarts from four copies of the new frame.
- The book forced FIRE after a lost life but stored that step as if the policy had chosen it; here FIRE is
  pressed by the environment code and is not a training sample.
- Episodes are counted thread-safely; global updates are serialised by a lock (Keras 3's apply_gradients is
  not thread-safe); the local copy is refreshed by one compiled assign instead of set_weights.
- At most `--active-threads` workers (default: one per CPU core) play at the same time; the others wait their
  turn, and a worker hands its turn on after every update (first come, first served). All 8 environments and
  local networks still take part. Python threads share one interpreter lock, so on a 2-core machine 8 threads
  all playing at once only fight over it and run slower than 1 thread; taking turns keeps 8 at the speed of 2.
- TensorFlow runs each (tiny) kernel on the thread that called it instead of a pool of helper threads
  (`one_thread_per_kernel`): about 20 % less CPU per step here.
- Gradients are clipped to a global norm of 40 (not in the book; a common A3C safeguard so that one unlucky
  rollout cannot wreck the shared network).

Run:  python 3-atari/2-breakout-a3c/breakout_a3c.py --threads 8
Watch: tensorboard --logdir 3-atari/2-breakout-a3c/summary        (pip install tensorboard)
Play: python 3-atari/2-breakout-a3c/play_a3c_model.py --episodes 10 --no-render

The shipped save_model/breakout_a3c_trained.weights.h5 was trained with `--threads 8 --lr 7e-4 --seed 1`
(7e-4 is the A3C paper's usual learning rate; the book's 2.5e-4 stays the default) for 1.69 M agent steps
(6.7 M frames) on a shared 2-core CPU; its curve is save_graph/breakout_a3c_trained.png (.csv: the numbers).
"""
import argparse
import collections
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

import ale_py
import cv2
import gymnasium
import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework.summary_pb2 import SummaryMetadata

HERE = Path(__file__).resolve().parent
NAME = "breakout_a3c"
# Every thread traces its own copies of the same functions, once each. TensorFlow's retracing detector
# (keyed by source code) counts those copies as "retracing" and warns; they are not, so drop that message.
tf.get_logger().addFilter(lambda record: "triggered tf.function retracing" not in record.getMessage())

# ---- hyperparameters (the book's values; --threads, --t-max, --lr, --max-steps override theirs) ----
THREADS = 8                 # actor-learner threads
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
ACTIVE_THREADS = None       # threads playing at once (None: one per CPU core, see usable_cores); not in the book
NO_OP_MAX = 30              # after a reset, press FIRE a random 1..30 times (random start positions)

STATE_SIZE = (84, 84, 4)    # four 84×84 grayscale frames
ACTIONS = (1, 2, 3)         # agent action 0, 1, 2 → the emulator's FIRE, RIGHT, LEFT (no NOOP)
FIRE = 1


# ---- the environment and the book's frame pre-processing ----
def make_env():
    """BreakoutDeterministic-v4 of the book = ALE/Breakout-v5 with 4 frames per step and no sticky actions."""
    gymnasium.register_envs(ale_py)
    return gymnasium.make("ALE/Breakout-v5", frameskip=4, repeat_action_probability=0.0,
                          obs_type="grayscale")


def pre_processing(next_observe, observe):
    """The book's A3C pre-processing: the maximum of the last two frames (Atari sprites flicker),
    grayscale (done by the emulator here), resized to 84×84, uint8."""
    frame = np.maximum(next_observe, observe)
    return cv2.resize(frame, (84, 84), interpolation=cv2.INTER_AREA)


def discount_rewards(rewards, done, next_value, gamma=GAMMA):
    """k-step returns of one rollout: R ← r + γR backwards, starting from 0 after a lost life or game over
    and from V(next state) otherwise."""
    returns = np.zeros(len(rewards), dtype=np.float32)
    running = 0.0 if done else float(next_value)
    for i in reversed(range(len(rewards))):
        running = rewards[i] + gamma * running
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
def build_model():
    """84×84×4 uint8 → /255 → Conv(16, 8×8, 4) → Conv(32, 4×4, 2) → Flatten → Dense(256)
    → π(a|s): softmax over 3 actions, and V(s): linear."""
    state = keras.Input(shape=STATE_SIZE, dtype="uint8")
    x = keras.layers.Rescaling(1.0 / 255.0)(state)
    x = keras.layers.Conv2D(16, 8, strides=4, activation="relu")(x)
    x = keras.layers.Conv2D(32, 4, strides=2, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    policy = keras.layers.Dense(len(ACTIONS), activation="softmax", name="policy")(x)
    value = keras.layers.Dense(1, name="value")(x)
    return keras.Model(state, [policy, value], name="actor_critic")


# ---- plumbing: summaries, saving, loading (the same in every chapter; safe to skip) ----
def summary(name, value, step, plugin="scalars"):
    """tf.summary.scalar / .text need the tensorboard package at WRITE time; the raw write with the plugin's
    tag does not (TensorBoard itself is needed only to look: pip install tensorboard)."""
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=plugin))
    dtype = tf.string if plugin == "text" else tf.float32
    tf.summary.write(name, tf.constant(value, dtype), step=step, metadata=metadata)


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
    try:
        model.load_weights(path)
    except Exception as error:            # missing, truncated, wrong architecture
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        # A wrong architecture: Keras says "... for object <Conv2D ...>:" and the reason on the next line.
        reason = lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]
        reason = reason.split(" Target variable:")[0]          # not the dump of the variable's values
        sys.exit(f"error: cannot load weights from {path} ({reason}); {how_to_make}")


def usable_cores():
    """CPU cores this process may use: the affinity mask (else the CPU count), capped by a container's CPU
    quota (cgroup v2 cpu.max or v1 cpu.cfs_quota_us; e.g. `docker --cpus 2` on a 64-core host gives 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    for quota_file, period_file in (("/sys/fs/cgroup/cpu.max", None),
                                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            fields = Path(quota_file).read_text().split()
            quota = fields[0]
            period = fields[1] if period_file is None else Path(period_file).read_text().strip()
            if quota not in ("max", "-1"):
                return max(1, min(cores, int(quota) // int(period)))
        except (OSError, ValueError, IndexError):
            continue
    return cores


def one_thread_per_kernel(threads=1):
    """Run each TensorFlow kernel on the Python thread that called it (TensorFlow's intra-op pool of 1 thread).
    The kernels here are tiny (a 2-layer CNN on one state); handing them to a pool of helper threads costs more
    than it gains, and the workers already keep the cores busy. Must run before TensorFlow starts (before the
    first model is built); if it already has, its pools are kept as they are and this returns False."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        return True
    except RuntimeError:
        return False


class Turns:
    """At most `slots` threads hold a turn at once; the others wait in a first-come, first-served queue.

    A thread that gives its turn back while others wait hands it straight to the one that waited longest, so
    it cannot take it again at once (a plain threading.Semaphore lets the releasing thread barge back in and
    starve the rest). Waiting threads sleep on an Event, which costs no interpreter lock.
    """

    def __init__(self, slots):
        self.free = slots
        self.lock = threading.Lock()
        self.waiting = collections.deque()

    def acquire(self):
        with self.lock:
            if self.free > 0 and not self.waiting:
                self.free -= 1
                return
            turn = threading.Event()
            self.waiting.append(turn)
        turn.wait()                            # set by release(): the slot was handed over to this thread

    def release(self):
        with self.lock:
            if self.waiting:
                self.waiting.popleft().set()
            else:
                self.free += 1

    # Let the longest-waiting thread play (if any waits) and queue up again behind it.
    # Returns True when other threads played in between.
    def pass_on(self):
        with self.lock:
            others_wait = bool(self.waiting)
        self.release()
        self.acquire()
        return others_wait

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


# ---- the global agent: network, optimiser, counters, summaries, saving ----
class A3CAgent:
    def __init__(self, threads=THREADS, t_max=T_MAX, learning_rate=LEARNING_RATE, save_dir=HERE,
                 seed=None, verbose=True, active_threads=ACTIVE_THREADS):
        # Hyperparameters of the run.
        self.threads = threads
        if active_threads is not None and active_threads < 1:
            raise ValueError(f"active_threads must be at least 1, got {active_threads}")
        self.active_threads = min(threads, active_threads or usable_cores())
        self.t_max = t_max
        self.gamma = GAMMA
        self.entropy_beta = ENTROPY_BETA
        self.value_weight = VALUE_WEIGHT
        self.max_grad_norm = MAX_GRAD_NORM
        self.learning_rate = learning_rate
        self.seed = seed
        self.verbose = verbose

        # The global network and the one optimiser all threads share (so RMSprop's statistics are shared, as
        # in the paper). Everything Keras builds is built here, in the main thread, before any worker starts.
        self.model = self.build_model()
        self.optimizer = keras.optimizers.RMSprop(learning_rate=learning_rate, rho=RMS_RHO,
                                                  epsilon=RMS_EPSILON)
        self.optimizer.build(self.model.trainable_variables)

        # Shared state of the threads. `lock` serialises global updates (and saving); `log_lock` keeps one
        # thread at a time in the episode counter, the printout and the TensorBoard writer.
        self.lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.turns = Turns(self.active_threads)   # how many workers play at once (see Turns)
        self.stop_event = threading.Event()
        self.episode = 0
        self.total_steps = 0
        self.updates = 0
        self.scores = []                        # (episode, total steps, score, duration, thread)

        self.save_dir = Path(save_dir)
        self.model_path = self.save_dir / "save_model" / f"{NAME}.weights.h5"
        self.best_path = self.save_dir / "save_model" / f"{NAME}_best.weights.h5"
        self.graph_path = self.save_dir / "save_graph" / f"{NAME}.png"
        self.log_path = self.save_dir / "save_graph" / f"{NAME}.csv"
        self.writer = None

    # The actor-critic of the book, used for the global network and for every thread's local copy.
    def build_model(self):
        return build_model()

    # Load weights to start from (--load), and continue the curve of a previous run in the same --save-dir.
    def load_model(self, path):
        load_weights(self.model, path, f"train one with: python {Path(__file__).name}")
        if self.log_path.exists():
            with open(self.log_path, newline="") as file:
                rows = [(int(r["episode"]), int(r["total_steps"]), float(r["score"]), int(r["duration"]),
                         int(r["thread"])) for r in csv.DictReader(file)]
            if rows:
                self.scores = rows
                self.episode, self.total_steps = rows[-1][0], rows[-1][1]

    # Called by a worker at the end of a game: count it (thread-safely), print one line, write summaries.
    def end_episode(self, thread, score, duration, avg_max_prob):
        with self.log_lock:
            self.episode += 1
            episode, total_steps = self.episode, self.total_steps
            self.scores.append((episode, total_steps, score, duration, thread))
            steps_per_s = (total_steps - self.start_steps) / max(time.perf_counter() - self.start_time, 1e-9)
            if self.verbose:
                print(f"episode: {episode} | score: {score:.1f} | avg max prob: {avg_max_prob:.3f} | "
                      f"duration: {duration} | thread: {thread} | total steps: {total_steps} | "
                      f"steps/s: {steps_per_s:.0f}", flush=True)
            if self.writer is not None:
                with self.writer.as_default():
                    summary("Total Reward/Episode", score, episode)
                    summary("Average Max Prob/Episode", avg_max_prob, episode)
                    summary("Duration/Episode", duration, episode)
                    summary("Steps per Second", steps_per_s, episode)

    def recent_mean(self, n=100):
        with self.log_lock:
            scores = [row[2] for row in self.scores[-n:]]
        return (float(np.mean(scores)) if scores else float("-inf")), len(scores)

    # Save the global weights (atomically, under the update lock so no update is half-applied), the curve
    # and its numbers. Called from the main thread every 10 minutes and at the end.
    def save_model(self, path=None):
        path = Path(path or self.model_path)
        with self.lock:
            atomic_write(path, self.model.save_weights)
        with self.log_lock:
            rows = list(self.scores)

        def write_csv(tmp):
            with open(tmp, "w", newline="") as file:
                out = csv.writer(file)
                out.writerow(["episode", "total_steps", "score", "duration", "thread"])
                out.writerows(rows)
        atomic_write(self.log_path, write_csv)
        if rows:
            atomic_write(self.graph_path, lambda tmp: plot_scores(rows, tmp))

    # Start the actor-learner threads and look after them from the main thread until the step budget is
    # spent (or Ctrl-C): save every SAVE_EVERY_S seconds and keep the best global weights so far.
    def train(self, max_steps=MAX_STEPS, max_episodes=None, save_every=SAVE_EVERY_S, summaries=True):
        for folder in ("save_model", "save_graph", "summary"):
            ensure_writable(self.save_dir / folder)
        if summaries:
            self.writer = tf.summary.create_file_writer(str(self.save_dir / "summary" / NAME))
            with self.writer.as_default():
                summary("hyperparameters", hyperparameter_table(self), 0, plugin="text")
        workers = self.workers = [Agent(self, index, max_steps, max_episodes) for index in range(self.threads)]
        self.start_time, self.start_steps = time.perf_counter(), self.total_steps
        for worker in workers:
            worker.start()
        last_save, best_mean = time.perf_counter(), self.recent_mean()[0]
        interrupted = False
        try:
            while any(worker.is_alive() for worker in workers):
                self.stop_event.wait(timeout=1.0)
                if time.perf_counter() - last_save >= save_every:
                    self.save_model()
                    last_save = time.perf_counter()
                    mean, count = self.recent_mean()
                    if count >= 20 and mean > best_mean:
                        best_mean = mean
                        self.save_model(self.best_path)
                    if self.verbose:
                        print(f"saved {self.model_path} (mean of last {count} scores: {mean:.1f})", flush=True)
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: stopping the threads ...", flush=True)
        finally:
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
                  f"{self.threads} threads, {self.active_threads} at a time)")
            print(f"weights saved to {self.model_path}")
            if self.scores:
                print(f"graph saved to {self.graph_path}")
            if self.writer is not None:
                print(f"summaries in {self.save_dir / 'summary' / NAME} "
                      f"(tensorboard --logdir {self.save_dir / 'summary'})")
        if errors:
            raise errors[0]
        return interrupted


# ---- one actor-learner thread: its own Breakout, its own local network ----
class Agent(threading.Thread):
    def __init__(self, global_agent, index, max_steps=MAX_STEPS, max_episodes=None):
        super().__init__(name=f"actor-learner-{index}", daemon=True)
        self.global_agent = global_agent
        self.index = index
        self.max_steps = max_steps
        self.max_episodes = max_episodes
        self.t_max = global_agent.t_max
        self.error = None
        self.rollouts = 0                     # global updates this thread made

        # The local copy θ' and its compiled functions, built here, i.e. in the main thread.
        self.local_model = global_agent.build_model()
        self.build_functions()
        self.update_local_model()

        # Rollout memory: preallocated, reused every rollout.
        self.states = np.zeros((self.t_max, *STATE_SIZE), dtype=np.uint8)
        self.actions = np.zeros(self.t_max, dtype=np.int32)
        self.rewards = np.zeros(self.t_max, dtype=np.float32)
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

        # XLA (jit_compile) halves the cost of the small per-step call (≈0.5 ms instead of ≈0.9 ms here) and of
        # the update; for the gradient step it is slower (rollouts have varying lengths), so that one is plain.
        @tf.function(input_signature=[state_spec], jit_compile=True)
        def act(states):
            policy, value = local(states, training=False)
            return policy[0], value[0, 0]

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
        # Python work done under the interpreter lock on every step (≈0.1-0.2 ms saved per call here).
        self.act = act.get_concrete_function()
        self.compute_gradients = compute_gradients.get_concrete_function()
        self.apply_and_sync = apply_and_sync.get_concrete_function()
        self.sync = sync
        self.act(tf.zeros((1, *STATE_SIZE), tf.uint8))   # compiles act's XLA code now, not in the worker

    # Sample an action from the local policy π(a|s; θ'). One compiled call; returns (action, policy).
    def get_action(self, history):
        policy = self.act(tf.constant(history))[0].numpy()
        action = int(np.searchsorted(np.cumsum(policy), self.rng.random() * policy.sum()))
        return min(action, len(ACTIONS) - 1), policy

    # Remember one step of the rollout.
    def append_sample(self, history, action, reward):
        self.states[self.n_samples] = history[0]
        self.actions[self.n_samples] = action
        self.rewards[self.n_samples] = reward
        self.n_samples += 1

    # θ' ← θ, one compiled assign of every variable (set_weights would cost milliseconds per call).
    def update_local_model(self):
        self.sync()

    # End of a rollout: k-step returns, gradients at θ', one update of θ under the lock, then θ' ← θ.
    def train_model(self, next_history, done):
        n = self.n_samples
        next_value = 0.0 if done else float(self.act(tf.constant(next_history))[1])
        returns = discount_rewards(self.rewards[:n], done, next_value, self.global_agent.gamma)
        grads = self.compute_gradients(tf.constant(self.states[:n]), tf.constant(self.actions[:n]),
                                       tf.constant(returns))
        with self.global_agent.lock:
            self.apply_and_sync(grads)
            self.global_agent.total_steps += n
            self.global_agent.updates += 1
        self.rollouts += 1
        self.n_samples = 0

    # Reset the game and press FIRE a random 1..30 times; the history is four copies of the first frame.
    def reset_env(self, env):
        observe, info = env.reset(seed=self.env_seed)
        self.env_seed = None                  # seed only the first reset; later ones continue the stream
        for _ in range(self.rng.integers(1, NO_OP_MAX + 1)):
            observe, _, _, _, info = env.step(FIRE)
        frame = pre_processing(observe, observe)
        return observe, np.repeat(frame[None, :, :, None], 4, axis=3), info["lives"]

    def budget_left(self):
        agent = self.global_agent
        if agent.stop_event.is_set() or agent.total_steps >= self.max_steps:
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
        env = None
        try:
            if not self.budget_left():        # the budget ran out while this thread waited
                return
            env = make_env()
            while self.budget_left():
                observe, history, lives = self.reset_env(env)
                score, duration, sum_max_prob = 0.0, 0, 0.0
                self.n_samples = 0
                while self.budget_left():
                    action, policy = self.get_action(history)
                    next_observe, reward, terminated, truncated, info = env.step(ACTIONS[action])
                    frame = pre_processing(next_observe, observe)
                    observe = next_observe
                    next_history = np.concatenate([history[..., 1:], frame[None, :, :, None]], axis=3)
                    dead = info["lives"] < lives
                    lives = info["lives"]
                    score += reward
                    duration += 1
                    sum_max_prob += float(policy.max())
                    # A lost life is terminal for learning; the score keeps the real (unclipped) rewards.
                    self.append_sample(history, action, float(np.clip(reward, -1.0, 1.0)))
                    if dead or terminated or truncated or self.n_samples == self.t_max:
                        self.train_model(next_history, done=dead or terminated)
                        # Another waiting thread gets to play; back on turn, start again from the newest θ.
                        if turns.pass_on():
                            with self.global_agent.lock:
                                self.update_local_model()
                    if dead and not (terminated or truncated):
                        # Relaunch the ball (not a sample: the policy did not choose it); fresh history.
                        observe, reward, terminated, truncated, info = env.step(FIRE)
                        score += reward
                        frame = pre_processing(observe, observe)
                        next_history = np.repeat(frame[None, :, :, None], 4, axis=3)
                    if terminated or truncated:
                        self.global_agent.end_episode(self.index, score, duration, sum_max_prob / duration)
                        break
                    history = next_history
        finally:
            turns.release()                   # first, so that no error below can keep the others waiting
            if env is not None:
                env.close()


def hyperparameter_table(agent):
    rows = [("threads", agent.threads), ("active threads", agent.active_threads), ("t_max", agent.t_max),
            ("gamma", agent.gamma),
            ("learning rate", agent.learning_rate), ("RMSprop rho", RMS_RHO), ("RMSprop epsilon", RMS_EPSILON),
            ("entropy beta", agent.entropy_beta), ("value weight", agent.value_weight),
            ("max grad norm", agent.max_grad_norm), ("seed", agent.seed)]
    return "| hyperparameter | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def plot_scores(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = np.array([row[1] for row in rows], dtype=np.float64)
    scores = np.array([row[2] for row in rows], dtype=np.float64)
    window = min(100, len(scores))
    mean = np.convolve(scores, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, scores, ".", markersize=2, alpha=0.4, label="game score")
    ax.plot(steps[window - 1:], mean, "r-", label=f"mean of last {window}")
    ax.set_xlabel("agent steps (all threads; 1 step = 4 frames)")
    ax.set_ylabel("score")
    ax.set_title("Breakout A3C")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


# ---- plumbing: arguments ----
def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train A3C on Atari Breakout (actor-learner threads).")
    parser.add_argument("--threads", type=positive_int, default=THREADS, help="actor-learner threads")
    parser.add_argument("--active-threads", type=positive_int, default=ACTIVE_THREADS,
                        help="threads that play at the same time, the others wait their turn "
                             f"(default: one per CPU core, here {usable_cores()})")
    parser.add_argument("--t-max", type=positive_int, default=T_MAX, help="steps per rollout before an update")
    parser.add_argument("--lr", type=positive_float, default=LEARNING_RATE, help="RMSprop learning rate")
    parser.add_argument("--max-steps", type=positive_int, default=MAX_STEPS,
                        help="stop when the agent steps of all threads reach this (1 step = 4 frames; "
                             "a run resumed with --load counts on from its curve)")
    parser.add_argument("--episodes", type=positive_int, default=None,
                        help="stop after this many games over all threads (default: no limit)")
    parser.add_argument("--save-every", type=positive_float, default=SAVE_EVERY_S,
                        help="seconds between checkpoints of the global weights")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--save-dir", type=Path, default=HERE,
                        help="artefacts go to DIR/save_model, DIR/save_graph, DIR/summary (default: this folder)")
    parser.add_argument("--load", type=Path, default=None,
                        help="start from these weights (with --play: play them); the curve in --save-dir goes on")
    parser.add_argument("--play", action="store_true",
                        help="do not train: play the trained agent (same as play_a3c_model.py)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="with --play: show the game (training never renders: threads must not draw)")
    return parser.parse_args(argv)


def stop_on_sigterm(signum, frame):
    """`kill PID` stops training like Ctrl-C does: threads stopped, weights saved."""
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    if args.play:
        sys.path.insert(0, str(HERE))
        import play_a3c_model
        play_argv = ["--episodes", str(args.episodes or 10), "--render" if args.render else "--no-render"]
        play_argv += ["--load", str(args.load)] if args.load else []
        play_argv += ["--seed", str(args.seed)] if args.seed is not None else []
        return play_a3c_model.main(play_argv)

    # Seeding, in one place. Each thread draws its actions from its own numpy generator (seed + 1000·index),
    # so the threads do not share random state; thread scheduling still makes runs differ.
    if args.seed is not None:
        random.seed(args.seed)
        np.random.seed(args.seed)
        keras.utils.set_random_seed(args.seed)

    one_thread_per_kernel()
    agent = A3CAgent(threads=args.threads, t_max=args.t_max, learning_rate=args.lr,
                     save_dir=args.save_dir, seed=args.seed, active_threads=args.active_threads)
    for folder in ("save_model", "save_graph", "summary"):
        ensure_writable(args.save_dir / folder)
    if args.load:
        agent.load_model(args.load)
    interrupted = agent.train(max_steps=args.max_steps, max_episodes=args.episodes,
                              save_every=args.save_every)
    if interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()
