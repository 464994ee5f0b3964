"""Throughput of the Breakout A3C (3-atari/2-breakout-a3c/breakout_a3c.py), all rows in one run:

    emulator alone       the vector environment of --fast stepping random actions (same games, same threads)
    1 thread × 1 game    the book's A3C with one actor-learner
    book default         8 threads × 1 game, one per core playing at a time
    --fast               the preset: 4 threads × 8 games, all playing (and any --also variants)
    Breakout DQN         the DQN's agent steps/s while it trains (for the wall-clock-to-score table)
    learner update       first, alone: ms of one actor-learner's update (gradients at θ', then RMSprop on θ and
                         θ' ← θ) and of its acting call, in float32 and in bfloat16 (--precision)

    python benchmarks/breakout_a3c.py                     # 30,000 agent steps per row
    python benchmarks/breakout_a3c.py --steps 60000 --also 2 16 --also 3 16 --repeats 3
    python benchmarks/breakout_a3c.py --update-only      # just the learner update in both precisions

Every A3C row runs the real training (A3CAgent.train, untouched) and measures the steady state: from the moment
a quarter of the budget is done to the end (model building, the first compilations and the first games'
start-up are left out). Where the time goes is measured by wrapping the chapter's own functions
(Agent.get_action, the games' step, Agent.append_sample, Agent.train_model) with a wall clock: thread-time per
agent step, summed over the actor-learner threads (it includes waiting for the interpreter lock and, in
games.step, for the emulator's C++ threads); "other" is the rest of the threads' time (the loop's own Python).
The DQN row runs in a separate process with TensorFlow's default thread pools (as breakout_dqn.py runs), so
that the A3C's one-thread-per-kernel setting does not slow it.
Columns: agent steps/s (wall clock), CPU ms per step (process CPU time / steps: what a step costs, whoever else
uses the machine), cores busy (CPU time / wall time). The load average is printed before and after each row.
Runs without pytest.
"""
import argparse
import os
import statistics
import tempfile
import threading
import time
from collections import defaultdict

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from common import load_average, load_module  # noqa: E402  (benchmarks/common.py)

PIECES = {"get_action": "acting (one network call for all games)", "step": "games.step (emulator + preprocessing)",
          "append_sample": "append_sample", "train_model": "train_model (returns, gradients, update)"}


def steady_rate(a3c, save_dir, steps, threads, envs_per_thread, **options):
    """Train for `steps` agent steps; steps/s and CPU between 25 % of the budget and the end, and the CPU
    time of each wrapped piece (per agent step)."""
    agent = a3c.A3CAgent(threads=threads, envs_per_thread=envs_per_thread, save_dir=save_dir, seed=0,
                         verbose=False, **options)
    samples, done, lock = [], threading.Event(), threading.Lock()
    piece_cpu = defaultdict(float)

    def timed(name, function):                # CPU time of this thread spent in `function`
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                if samples and samples[-1][2] >= steps // 4:
                    with lock:
                        piece_cpu[name] += time.perf_counter() - start
        return wrapper

    real_make_games = a3c.make_games

    def make_games(*args, **kwargs):           # wrap the step of every actor-learner's games
        games = real_make_games(*args, **kwargs)
        games.step = timed("step", games.step)
        return games
    a3c.make_games = make_games
    real_init = a3c.Agent.__init__

    def init(worker, *args, **kwargs):
        real_init(worker, *args, **kwargs)
        for name in ("get_action", "append_sample", "train_model"):
            setattr(worker, name, timed(name, getattr(worker, name)))
    a3c.Agent.__init__ = init

    def watch():                               # cheap observer: one read every 50 ms
        while not done.wait(0.05):
            samples.append((time.perf_counter(), time.process_time(), agent.total_steps))
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        agent.train(max_steps=steps, save_every=float("inf"), summaries=False)
    finally:
        a3c.make_games, a3c.Agent.__init__ = real_make_games, real_init
    end = (time.perf_counter(), time.process_time(), agent.total_steps)
    done.set()
    watcher.join()
    start = next((s for s in samples if s[2] >= steps // 4), samples[0] if samples else end)
    wall, cpu, counted = end[0] - start[0], end[1] - start[1], max(end[2] - start[2], 1)
    pieces = {PIECES[name]: 1000 * seconds / counted for name, seconds in piece_cpu.items()}
    pieces["other (the loop's own Python)"] = 1000 * wall * agent.active_threads / counted - sum(pieces.values())
    return {"steps/s": counted / max(wall, 1e-9), "cpu ms/step": 1000 * cpu / counted,
            "cores": cpu / max(wall, 1e-9)}, pieces


def emulator_alone(a3c, steps, threads, envs_per_thread):
    """The vector environment of the fast path, `threads` Python threads each stepping its own games with
    random actions (no network): the ceiling for the fast path on this machine."""
    import numpy as np
    environment = load_module("3-atari/2-breakout-a3c/environment.py")
    games = [environment.VectorBreakout(envs_per_thread, seed=index, num_threads=max(1, a3c.usable_cores() // threads))
             for index in range(threads)]
    for game in games:
        game.reset()
    per_thread = steps // (threads * envs_per_thread)

    def run(game, index):
        rng = np.random.default_rng(index)
        for _ in range(per_thread):
            game.step(rng.integers(0, 3, envs_per_thread))
    workers = [threading.Thread(target=run, args=(game, i)) for i, game in enumerate(games)]
    wall, cpu = time.perf_counter(), time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    for game in games:
        game.close()
    done = per_thread * threads * envs_per_thread
    return {"steps/s": done / wall, "cpu ms/step": 1000 * cpu / done, "cores": cpu / wall}


def learner_update(a3c, precision, games, t_max, repeats=200):
    """ms per update and per acting call of one actor-learner (its own compiled functions) on a rollout of
    t_max × games random screens, in the given precision; the median of `repeats` calls after warming up."""
    import numpy as np
    import tensorflow as tf
    with tempfile.TemporaryDirectory() as save_dir:
        agent = a3c.A3CAgent(threads=1, envs_per_thread=games, t_max=t_max, save_dir=save_dir, seed=0,
                             verbose=False, precision=precision)
        worker = a3c.Agent(agent, 0)
    rng = np.random.default_rng(0)
    states = tf.constant(rng.integers(0, 256, (t_max * games, *a3c.STATE_SIZE), dtype=np.uint8))
    actions = tf.constant(rng.integers(0, len(a3c.ACTIONS), t_max * games, dtype=np.int32))
    returns = tf.constant(rng.normal(size=t_max * games).astype(np.float32))
    acting_states = tf.constant(states.numpy()[:games])

    def update():
        grads, _ = worker.compute_gradients(states, actions, returns)     # and their global norm
        worker.apply_and_sync(grads)

    def act():
        worker.act(acting_states)[0].numpy()
    timings = {}
    for name, call in (("update", update), ("act", act)):
        for _ in range(10):
            call()
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
        timings[name] = 1000 * statistics.median(seconds)
    return timings


def precision_table(a3c):
    """The learner's update and acting call in both precisions, for the book's rollout and --fast's."""
    fast = load_module("3-atari/2-breakout-a3c/a3c_options.py").FAST
    print("| rollout | precision | update ms | acting call ms |")
    print("|---|---|---:|---:|")
    for games, t_max, label in ((1, a3c.T_MAX, "book: 1 game"), (fast["envs_per_thread"], fast["t_max"], "--fast")):
        for precision in ("float32", "bfloat16"):
            timing = learner_update(a3c, precision, games, t_max)
            print(f"| {label}, t_max {t_max} ({games * t_max} samples) | {precision} | {timing['update']:.2f} | "
                  f"{timing['act']:.2f} |", flush=True)
    print(f"({load_average()})\n")


def dqn_training_rate(steps):
    """Breakout DQN agent steps/s while it trains (epsilon 0.1, one minibatch every 4 steps), measured in a
    fresh process (TensorFlow's default thread pools) with the DQN benchmark's timed loop."""
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, __file__, "--dqn-only", str(steps)], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def dqn_training_rate_here(steps):
    import random
    import breakout_dqn as bench   # benchmarks/breakout_dqn.py
    dqn = bench.load_dqn()
    env = dqn.make_env()
    agent = dqn.DQNAgent(memory_size=max(4 * steps, 10_000), train_start=1)
    random.seed(0)
    agent.epsilon = 1.0
    bench.run_loop(dqn, agent, env, 200, 4, bench.Timers())            # fill a little, compile
    agent.epsilon = 0.1
    wall, cpu = bench.run_loop(dqn, agent, env, steps, 4, bench.Timers())
    env.close()
    return {"steps/s": steps / wall, "cpu ms/step": 1000 * cpu / steps, "cores": cpu / wall}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30_000, help="agent steps per A3C row")
    parser.add_argument("--also", type=int, nargs=2, action="append", default=[], metavar=("THREADS", "GAMES"),
                        help="also measure the fast path with THREADS threads × GAMES games (repeatable)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs per row (median kept)")
    parser.add_argument("--dqn-steps", type=int, default=3000, help="DQN training steps timed (0: skip)")
    parser.add_argument("--dqn-only", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--update-only", action="store_true", help="only the learner update in both precisions")
    args = parser.parse_args()
    if args.dqn_only:
        import json
        print(json.dumps(dqn_training_rate_here(args.dqn_only)))
        return

    a3c = load_module("3-atari/2-breakout-a3c/breakout_a3c.py")
    a3c.one_thread_per_kernel()                               # as the trainer does
    fast = load_module("3-atari/2-breakout-a3c/a3c_options.py").FAST
    print(f"{os.cpu_count()} CPUs, {a3c.usable_cores()} usable; before: {load_average()}")
    precision_table(a3c)
    if args.update_only:
        return
    rows = [("1 thread × 1 game (book)", dict(threads=1, envs_per_thread=1)),
            (f"{a3c.THREADS} threads × 1 game (book default)", dict(threads=a3c.THREADS, envs_per_thread=1))]
    fast_options = dict(t_max=fast["t_max"], learning_rate=fast["lr"], max_grad_norm=fast["max_grad_norm"],
                        rms_epsilon=fast["rms_epsilon"])
    for threads, envs in [(fast["threads"], fast["envs_per_thread"])] + [tuple(v) for v in args.also]:
        name = "--fast" if (threads, envs) == (fast["threads"], fast["envs_per_thread"]) else "fast variant"
        rows.append((f"{name}: {threads} threads × {envs} games, all playing, t_max {fast['t_max']}",
                     dict(threads=threads, envs_per_thread=envs, active_threads=threads, **fast_options)))
    results = defaultdict(list)
    breakdowns = {}
    with tempfile.TemporaryDirectory() as save_dir:
        for _ in range(args.repeats):             # interleaved, so a burst of outside load hits every row
            for label, options in rows:
                result, pieces = steady_rate(a3c, save_dir, args.steps, **options)
                results[label].append(result)
                breakdowns[label] = pieces
                print(f"  {label}: {result['steps/s']:.0f} steps/s, {result['cpu ms/step']:.2f} CPU ms/step "
                      f"({load_average()})", flush=True)
            label = f"emulator alone: {fast['threads']} threads × {fast['envs_per_thread']} games, random actions"
            results[label].append(emulator_alone(a3c, args.steps, fast["threads"], fast["envs_per_thread"]))
            print(f"  {label}: {results[label][-1]['steps/s']:.0f} steps/s ({load_average()})", flush=True)
        if args.dqn_steps:
            results["Breakout DQN while training"].append(dqn_training_rate(args.dqn_steps))
            print(f"  Breakout DQN: {results['Breakout DQN while training'][-1]['steps/s']:.0f} steps/s "
                  f"({load_average()})", flush=True)
    print(f"after: {load_average()}\n")
    base = statistics.median(r["steps/s"] for r in results[rows[0][0]])
    print(f"median of {args.repeats} run(s); A3C rows: steady state of {args.steps} agent steps\n")
    print("| configuration | agent steps/s | vs 1 thread × 1 game | CPU ms per step | cores busy |")
    print("|---|---:|---:|---:|---:|")
    for label, runs in results.items():
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(f"| {label} | {median['steps/s']:.0f} | {median['steps/s'] / base:.2f}× | "
              f"{median['cpu ms/step']:.2f} | {median['cores']:.2f} |")
    for label, pieces in breakdowns.items():
        total = sum(pieces.values())
        print(f"\nWhere the actor-learners' time goes, {label} (last run; thread ms per agent step, "
              "summed over the threads playing):\n")
        print("| piece | thread ms/step | share |")
        print("|---|---:|---:|")
        for name, ms in pieces.items():
            print(f"| {name} | {ms:.3f} | {100 * ms / total:.0f} % |")


if __name__ == "__main__":
    main()
