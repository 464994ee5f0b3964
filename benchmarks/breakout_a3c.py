"""Throughput of the threaded A3C (3-atari/2-breakout-a3c/breakout_a3c.py): total agent steps per second for
1, 2, 4 and 8 actor-learner threads with a fixed step budget, and where one step's time goes.
The trainer lets one thread per CPU core play at a time (the others wait their turn); for comparison, 8 threads
are also measured all playing at once, as in the book (--all-at-once).

    python benchmarks/breakout_a3c.py                 # budget 4000 agent steps per thread count
    python benchmarks/breakout_a3c.py --steps 8000 --threads 1 2 4 8 --repeats 5

Part 1 runs the real training (A3CAgent.train, untouched) and measures the rate in steady state: from the moment
a quarter of the budget is done to the end (model building and the first XLA compilations are left out).
Part 2 replays one actor-learner's loop in the main thread with a CPU-time clock around each piece.
Columns: agent steps/s (wall clock), CPU ms per step (process CPU time / steps: what a step costs, whoever else
uses the machine), cores busy (CPU time / wall time: how much of the 2 cores this process actually got).
The machine's load (uptime) is printed before and after: timings on a shared machine are only as good as that.
"""
import argparse
import os
import statistics
import tempfile
import threading
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from common import load_average, load_module  # noqa: E402  (benchmarks/common.py)


def load_a3c():
    return load_module("3-atari/2-breakout-a3c/breakout_a3c.py")


def steady_rate(a3c, threads, steps, save_dir, active=None):
    """Train with `threads` threads (`active` of them playing at once; None: the trainer's default, one per
    core) for `steps` agent steps; steps/s between 25 % of the budget and the end."""
    agent = a3c.A3CAgent(threads=threads, save_dir=save_dir, seed=0, verbose=False, active_threads=active)
    samples, done = [], threading.Event()

    def watch():                                  # cheap observer: one read every 50 ms
        while not done.wait(0.05):
            samples.append((time.perf_counter(), time.process_time(), agent.total_steps))
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    agent.train(max_steps=steps, save_every=float("inf"), summaries=False)
    end = (time.perf_counter(), time.process_time(), agent.total_steps)
    done.set()
    watcher.join()
    start = next((s for s in samples if s[2] >= steps // 4), samples[0] if samples else end)
    wall, cpu, done_steps = end[0] - start[0], end[1] - start[1], end[2] - start[2]
    return {"steps/s": done_steps / max(wall, 1e-9), "cpu ms/step": 1000 * cpu / max(done_steps, 1),
            "cores": cpu / max(wall, 1e-9), "with start-up": agent.total_steps / agent.train_seconds}


def step_breakdown(a3c, steps, save_dir):
    """One actor-learner's loop, in the main thread, with a CPU-time clock around each piece (ms per agent
    step). CPU time (of the whole process, TensorFlow's own threads included) is what a piece costs; wall time
    on a shared machine also counts the time others held the cores."""
    import numpy as np
    agent = a3c.A3CAgent(threads=1, save_dir=save_dir, seed=0, verbose=False)
    worker = a3c.Agent(agent, 0)
    env = a3c.make_env()
    cost = dict.fromkeys(["env.step (emulator, 4 frames)", "pre_processing (max, resize)",
                          "history + sample bookkeeping", "get_action (compiled act + sampling)",
                          "bootstrap V(next state) (per step)", "k-step returns (per step)",
                          "compute_gradients at θ' (per step)", "apply_and_sync under the lock (per step)"], 0.0)
    names = list(cost)
    clock = time.process_time
    observe, history, lives = worker.reset_env(env)
    for step in range(steps + 200):
        if step == 200:                             # warm-up done (first update's XLA compile included)
            cost = dict.fromkeys(names, 0.0)
        t0 = clock()
        action, policy = worker.get_action(history)
        t1 = clock()
        next_observe, reward, terminated, truncated, info = env.step(a3c.ACTIONS[action])
        t2 = clock()
        frame = a3c.pre_processing(next_observe, observe)
        t3 = clock()
        observe = next_observe
        next_history = np.concatenate([history[..., 1:], frame[None, :, :, None]], axis=3)
        dead = info["lives"] < lives
        lives = info["lives"]
        worker.append_sample(history, action, float(np.clip(reward, -1.0, 1.0)))
        t4 = clock()
        cost[names[3]] += t1 - t0
        cost[names[0]] += t2 - t1
        cost[names[1]] += t3 - t2
        cost[names[2]] += t4 - t3
        if dead or terminated or truncated or worker.n_samples == worker.t_max:
            # train_model, taken apart so that each piece is timed
            n, done_ = worker.n_samples, dead or terminated
            u0 = clock()
            next_value = 0.0 if done_ else float(worker.act(a3c.tf.constant(next_history))[1])
            u1 = clock()
            returns = a3c.discount_rewards(worker.rewards[:n], done_, next_value, agent.gamma)
            u2 = clock()
            grads = worker.compute_gradients(a3c.tf.constant(worker.states[:n]),
                                             a3c.tf.constant(worker.actions[:n]), a3c.tf.constant(returns))
            u3 = clock()
            with agent.lock:
                worker.apply_and_sync(grads)
            u4 = clock()
            worker.n_samples = 0
            cost[names[4]] += u1 - u0
            cost[names[5]] += u2 - u1
            cost[names[6]] += u3 - u2
            cost[names[7]] += u4 - u3
        if terminated or truncated:
            observe, history, lives = worker.reset_env(env)
        elif dead:
            observe, *_ = env.step(a3c.FIRE)
            history = np.repeat(a3c.pre_processing(observe, observe)[None, :, :, None], 4, axis=3)
        else:
            history = next_history
    env.close()
    return {name: 1000.0 * seconds / steps for name, seconds in cost.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="agent steps per thread count")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2, 4, 8],
                        help="thread counts to measure (none: only the per-step breakdown)")
    parser.add_argument("--all-at-once", type=int, nargs="*", default=None,
                        help="also measure these thread counts with every thread playing at once "
                             "(--active-threads N: the book's way, for comparison; default 8, none with "
                             "an empty --threads)")
    parser.add_argument("--intra-op", type=int, default=1,
                        help="TensorFlow intra-op threads (the trainer uses 1; 0 keeps TensorFlow's default)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per thread count (median kept)")
    parser.add_argument("--breakdown-steps", type=int, default=2000)
    args = parser.parse_args()

    if args.all_at_once is None:
        args.all_at_once = [8] if args.threads else []
    a3c = load_a3c()
    if args.intra_op and not a3c.one_thread_per_kernel(args.intra_op):   # as the trainer does (0: TF's default)
        print("note: TensorFlow had already started; its default intra-op pool stays")
    print(f"{os.cpu_count()} CPUs; before: {load_average()}")
    cores = a3c.usable_cores()
    # Rows: (threads, threads playing at once).
    rows = [(threads, min(threads, cores)) for threads in args.threads]
    rows += [(threads, threads) for threads in args.all_at_once if (threads, threads) not in rows]
    runs = {row: [] for row in rows}
    with tempfile.TemporaryDirectory() as save_dir:
        for _ in range(args.repeats):              # interleaved, so a burst of outside load hits every row
            for threads, active in rows:
                result = steady_rate(a3c, threads, args.steps, save_dir, active)
                runs[threads, active].append(result)
                print(f"  {threads} threads, {active} at once: {result['steps/s']:.0f} steps/s, "
                      f"{result['cpu ms/step']:.2f} CPU ms/step ({load_average()})", flush=True)
        breakdown = step_breakdown(a3c, args.breakdown_steps, save_dir)
    print(f"after: {load_average()}\n")
    if rows:
        median = {row: {key: statistics.median(r[key] for r in results) for key in results[0]}
                  for row, results in runs.items()}
        base = median[rows[0]]["steps/s"]
        print(f"median of {args.repeats} interleaved runs of {args.steps} agent steps each; {cores} usable cores:\n")
        print(f"| threads | playing at once | agent steps/s | vs {rows[0][0]} thread(s) | CPU ms per step | "
              "cores busy | steps/s incl. start-up |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for (threads, active), m in median.items():
            print(f"| {threads} | {active} | {m['steps/s']:.0f} | {m['steps/s'] / base:.2f}× | "
                  f"{m['cpu ms/step']:.2f} | {m['cores']:.2f} | {m['with start-up']:.0f} |")
    total = sum(breakdown.values())
    print(f"\nOne actor-learner alone, {args.breakdown_steps} steps (CPU ms per agent step):\n")
    print("| piece | CPU ms/step | share |")
    print("|---|---:|---:|")
    for name, ms in breakdown.items():
        print(f"| {name} | {ms:.3f} | {100 * ms / total:.0f} % |")
    print(f"| total | {total:.3f} | ≈ {1000 / total:.0f} steps per CPU-second |")


if __name__ == "__main__":
    main()
