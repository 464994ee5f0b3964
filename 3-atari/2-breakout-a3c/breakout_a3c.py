"""Breakout with A3C, the Asynchronous Advantage Actor-Critic (the book's chapter 7; Keras 3 on TensorFlow).

Mnih et al., "Asynchronous Methods for Deep Reinforcement Learning", ICML 2016: one GLOBAL network θ (a shared
convolutional trunk with a policy head π(a|s) and a value head V(s)) and several actor-learner threads, each with
its own Breakout game(s) and its own LOCAL copy θ' of the network:

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

The book's way (default): 8 threads, each playing ONE game, one network call per action. `--fast`: 4 threads,
each playing 8 games in the emulator's C++ vector environment (outside Python's interpreter lock), one call for
all 8 actions, t_max × 8 samples per update: several times the book's steps per second on 2 cores (BENCHMARKS.md).

What differs from the book's 2017 code (README.md has the details):
- R bootstraps from V(next state) and the value loss is a plain mean (the book: V of the wrong state, N×N).
- After a lost life the history restarts from four copies of the new frame (the book's reshape scrambled it);
  FIRE is pressed by the environment code, not stored as if the policy chose it (environment.py).
- Games are counted thread-safely, global updates are serialised by a lock (Keras 3's apply_gradients is not
  thread-safe), θ' ← θ is one compiled assign; at most one thread per core plays at a time (turns.py).
- Gradients are clipped to a global norm (40; 0.5 with --fast), a common safeguard against one bad rollout.
Checkpoints and the run's record: a3c_checkpoint.py; the jobs every chapter shares: plumbing.py (safe to skip).
"""
import argparse
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))                     # this folder's environment.py, turns.py, a3c_checkpoint.py
from plumbing import (NEVER, StopFlag, add_precision_argument, add_seed_argument, add_watching_arguments,
                      announce_precision, catch_signals_at_start, dtype_policy, finish, frames_for,
                      headless_unless_window, parse_arguments, positive_float, positive_int, report_scores,
                      save_folder, seed_everything, stopped_before_training, write_gif)
catch_signals_at_start(__name__)    # Ctrl-C, kill or a closed terminal while TensorFlow loads: exit 130, one line

import keras
import numpy as np
import tensorflow as tf

from a3c_checkpoint import RunLog, hyperparameter_table, load_to_play, resume, save_checkpoint, stop_diverged
from a3c_options import AUTO_BFLOAT16, RECORD_HELP, add_preset_options, apply_preset
from environment import ACTIONS, STATE_SIZE, WatchedBreakout, make_games
from turns import Player, Turns, active_slots, one_thread_per_kernel, usable_cores

NAME = "breakout_a3c"
TRAINED = HERE / "save_model" / f"{NAME}_trained.weights.h5"

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


# ---- the global agent: the network and optimiser every thread updates; it runs the threads ----
class A3CAgent:
    def __init__(self, threads=THREADS, t_max=T_MAX, learning_rate=LEARNING_RATE, save_dir=HERE,
                 seed=None, verbose=True, active_threads=ACTIVE_THREADS, envs_per_thread=ENVS_PER_THREAD,
                 max_grad_norm=MAX_GRAD_NORM, rms_epsilon=RMS_EPSILON, precision="float32", stop=NEVER):
        self.threads = threads
        self.active_threads = active_slots(threads, active_threads)    # None: one per CPU core (turns.py)
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

        # Shared state of the threads. `lock` serialises global updates (and saving).
        self.lock = threading.Lock()
        self.turns = Turns(self.active_threads)   # how many workers play at once (see turns.py)
        self.stop_event = threading.Event()
        self.total_steps = 0
        self.updates = 0
        self.log = RunLog(save_dir, NAME, verbose)  # games, curve, clock, summaries, file paths (a3c_checkpoint.py)

    # --load: the weights, RMSprop's state and the step and game counts saved with them go on (a3c_checkpoint.py).
    def load_model(self, path):
        resume(self, path, f"train one with: python {Path(__file__).name}")

    # The global weights with their facts, then the curve; False if not saved: a failure or NaN (a3c_checkpoint.py).
    def save_model(self, path=None, final=False):
        return save_checkpoint(self, path or self.log.model_path, final)

    def stopping(self):
        return self.stop.requested or self.stop_event.is_set()

    # Start the actor-learner threads and look after them from the main thread until the step budget is
    # spent (or Ctrl-C): save every SAVE_EVERY_S seconds and keep the best global weights so far.
    def train(self, max_steps=MAX_STEPS, max_episodes=None, save_every=SAVE_EVERY_S, summaries=True):
        self.log.open(hyperparameter_table(self) if summaries else None)   # the folders, TensorBoard
        workers = self.workers = []
        for index in range(self.threads):           # builds and compiles every local network (seconds)
            if self.stop.requested:
                return None                         # stopped before training started
            workers.append(Agent(self, index, max_steps, max_episodes))
        self.log.start(self.total_steps)
        for worker in workers:
            worker.start()
        last_save = time.perf_counter()
        try:
            while any(worker.is_alive() for worker in workers) and not self.stopping():
                self.stop_event.wait(timeout=0.2)
                if time.perf_counter() - last_save >= save_every:
                    if self.save_model() and self.log.new_best():   # saved; the mean of the last 100: the best?
                        self.save_model(self.log.best_path)
                    last_save = time.perf_counter()
            if self.stop.requested and self.log.diverged is None:
                print("\ninterrupted: stopping the threads and saving ...", flush=True)
        finally:        # never leave with a thread still playing: the process's exit would crash under it
            error = Player.stop_all(workers)      # set the stop event, wait for every thread
        elapsed = time.perf_counter() - self.log.start_time
        saved = self.save_model(final=True)
        self.log.report(self.total_steps, elapsed, f"{self.threads} threads × {self.envs_per_thread} games, "
                                                   f"{self.active_threads} at a time", saved)
        if error is not None:
            raise error
        return self.stop.requested


# ---- one actor-learner thread: its own game(s), its own local network ----
class Agent(Player):                          # a thread whose error stops the others (turns.py)
    def __init__(self, global_agent, index, max_steps=MAX_STEPS, max_episodes=None):
        super().__init__(f"actor-learner-{index}", global_agent.stop_event)
        self.global_agent = global_agent
        self.index = index
        self.max_steps = max_steps
        self.max_episodes = max_episodes
        self.t_max = global_agent.t_max
        self.n_games = global_agent.envs_per_thread
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
            grads, norm = tf.clip_by_global_norm(grads, agent.max_grad_norm)
            return grads, norm

        def sync():
            for local_variable, global_variable in zip(local.variables, global_model.variables):
                local_variable.assign(global_variable)

        @tf.function(input_signature=[[tf.TensorSpec(v.shape, v.dtype) for v in local.trainable_variables]],
                     jit_compile=True)
        def apply_and_sync(grads):
            optimizer.apply_gradients(zip(grads, global_model.trainable_variables))
            sync()

        # Keep the traced (concrete) functions: calling them skips tf.function's argument matching, which is
        # Python work done under the interpreter lock on every step.
        self.act = act.get_concrete_function()
        self.compute_gradients = compute_gradients.get_concrete_function()
        self.apply_and_sync = apply_and_sync.get_concrete_function()
        self.sync = tf.function(sync)
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
        grads, norm = self.compute_gradients(tf.constant(self.states[:n].reshape(-1, *STATE_SIZE)),
                                             tf.constant(self.actions[:n].reshape(-1)), tf.constant(returns.ravel()))
        if not np.isfinite(norm.numpy()):     # diverged (e.g. a far too large --lr): stop; θ keeps its last update
            stop_diverged(self.global_agent, "the gradients' global norm")
            return
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
        return self.max_episodes is None or agent.log.episode < self.max_episodes

    # The thread's life (Player.run calls it): play and learn while the budget lasts, on turn with the others.
    def play_and_learn(self):
        agent = self.global_agent
        with agent.turns as turns:            # wait for a turn to play (see Turns); given back at the end
            if not self.budget_left():        # the budget ran out while this thread waited
                return
            games = make_games(self.n_games, seed=self.env_seed, rng=self.rng,
                               num_threads=max(1, usable_cores() // agent.active_threads))
            try:
                states = games.reset()
                sum_max_prob = np.zeros(self.n_games)
                while self.budget_left():
                    actions, policy = self.get_action(states)
                    next_states, rewards, dead, finished = games.step(actions)
                    sum_max_prob += policy.max(axis=1)
                    # A lost life is terminal for learning; the score keeps the real (unclipped) rewards.
                    self.append_sample(states, actions, np.clip(rewards, -1.0, 1.0), dead)
                    for game, score, duration in finished:
                        avg_max_prob = sum_max_prob[game] / duration
                        agent.log.end_episode(self.index, score, duration, avg_max_prob, agent.total_steps)
                        sum_max_prob[game] = 0.0
                    # The book's single game also ends its rollout at a lost life.
                    if self.n_samples == self.t_max or (self.n_games == 1 and dead[0]):
                        self.train_model(next_states)
                        # Another waiting thread gets to play; back on turn, start again from the newest θ.
                        if turns.pass_on():
                            with agent.lock:
                                self.update_local_model()
                    states = next_states
            finally:
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
    game = WatchedBreakout(preprocessing, max_episode_steps, seed, rng, render, frames)
    scores, states = [], game.reset()
    while len(scores) < episodes and not stop.requested:
        policy = policy_of(tf.constant(states)).numpy()
        if sample:
            actions = np.array([rng.choice(len(p), p=p / p.sum()) for p in policy])
        else:
            actions = policy.argmax(axis=1)
        states, finished = game.step(actions)
        for _, score, duration in finished:
            scores.append(score)
            print(f"episode: {len(scores)} | score: {score:.1f} | steps: {duration}", flush=True)
    game.close()
    return scores


def play_main(load, episodes, render, seed, max_episode_steps=MAX_EPISODE_STEPS, sample=False, precision="auto",
              record=None):
    """--play here and play_a3c_model.py: load the weights and play them with their preprocessing; with
    `record` (a .gif path) also save the games' colour screens as an animated GIF."""
    stop = StopFlag()
    seed_everything(seed)
    render = headless_unless_window(render)
    frames = frames_for(record)                 # a list to keep the screens in, with --record
    model = build_model(announce_precision(precision, AUTO_BFLOAT16))
    preprocessing = load_to_play(model, load, f"train them with: python {Path(__file__).name}")
    scores = play(model, episodes, preprocessing, render, seed, max_episode_steps, sample, stop, frames)
    if frames:
        write_gif(record, frames, seconds_per_frame=4 / 60)            # an agent step is 4 frames at 60 Hz
    report_scores(scores, stop)


# ---- the command line ----
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train A3C on Atari Breakout (actor-learner threads).",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    book = dict(threads=THREADS, envs_per_thread=ENVS_PER_THREAD, active_threads=ACTIVE_THREADS, t_max=T_MAX,
                lr=LEARNING_RATE, max_grad_norm=MAX_GRAD_NORM, rms_epsilon=RMS_EPSILON)
    add_preset_options(parser, book)      # --fast, and the options whose default it changes (a3c_options.py)
    parser.add_argument("--max-steps", type=positive_int, default=MAX_STEPS,
                        help="stop when the agent steps of all threads reach this (1 step = 4 frames; "
                             "a run resumed with --load counts on)")
    parser.add_argument("--episodes", type=positive_int, default=None,
                        help="stop after this many games over all threads (None: no limit); with --play, "
                             "games to play (None: 10)")
    parser.add_argument("--save-every", type=positive_float, default=SAVE_EVERY_S,
                        help="seconds between checkpoints of the global weights")
    add_seed_argument(parser)
    parser.add_argument("--save-dir", type=save_folder, default=argparse.SUPPRESS,
                        help="artefacts go to DIR/save_model, DIR/save_graph, DIR/summary "
                             "(default: this script's folder)")
    add_watching_arguments(parser, TRAINED, record_help=RECORD_HELP,
                           load_help="start from these weights (with --play: play them); the curve in --save-dir "
                                     "goes on")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="with --play: show the game (training never renders: threads must not draw)")
    add_precision_argument(parser, AUTO_BFLOAT16)
    args = parse_arguments(parser, argv)
    apply_preset(parser, args, book)      # and the rollouts must fit in memory
    if not hasattr(args, "save_dir"):
        args.save_dir = HERE
    return args


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
    precision = announce_precision(args.precision, AUTO_BFLOAT16)
    agent = A3CAgent(threads=args.threads, t_max=args.t_max, learning_rate=args.lr, save_dir=args.save_dir,
                     seed=args.seed, active_threads=args.active_threads, envs_per_thread=args.envs_per_thread,
                     max_grad_norm=args.max_grad_norm, rms_epsilon=args.rms_epsilon, precision=precision, stop=stop)
    if args.load:
        agent.load_model(args.load)
    print(f"{args.threads} threads × {args.envs_per_thread} games ({agent.preprocessing} preprocessing), "
          f"t_max {args.t_max}, lr {args.lr}, max grad norm {args.max_grad_norm}", flush=True)
    interrupted = None if stop.requested else agent.train(max_steps=args.max_steps, max_episodes=args.episodes,
                                                          save_every=args.save_every)
    if interrupted is None:
        stopped_before_training()         # one line, exit 130
    finish(stop)                          # 130 after a stop signal (also one during the final save); 1 if diverged


if __name__ == "__main__":
    main()
