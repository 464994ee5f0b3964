"""How long the CartPole chapters take to reach the book's stop rule (mean of the last 10 scores > 490).

Runs each script once per seed, as a fresh process (so TensorFlow's start-up is counted), with its own
book budget of episodes and a throw-away --save-dir, and prints per seed: episodes, env steps, seconds of
training (the script's own count), wall seconds of the whole process and its CPU seconds (user + system),
or "not solved". The median wall time counts an unsolved run as infinitely slow. The 1-minute load average
before each run is printed too: wall times are only comparable on an otherwise idle machine (CPU seconds
suffer less from other load).

    python benchmarks/cartpole.py                       # 5 seeds (0..4) of DQN and A2C
    python benchmarks/cartpole.py --algos dqn --seeds 10 11 12
"""
import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {
    "dqn": ROOT / "2-cartpole" / "1-dqn" / "cartpole_dqn.py",
    "a2c": ROOT / "2-cartpole" / "2-actor-critic" / "cartpole_a2c.py",
}
SOLVED = re.compile(r"solved at episode (\d+) \((\d+) env steps, ([\d.]+) s of training\)")
NOT_SOLVED = re.compile(r"not solved in (\d+) episodes \((\d+) env steps, ([\d.]+) s of training\)")


def run_once(script, seed, timeout):
    """One training run; returns a dict with solved, episodes, steps, train_s, wall_s, cpu_s, load."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    env.pop("DISPLAY", None)
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as save_dir:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(script), "--seed", str(seed), "--save-dir", save_dir],
                              capture_output=True, text=True, env=env, timeout=timeout)
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"error: {script.name} --seed {seed} exited {done.returncode}:\n{done.stderr[-2000:]}")
    match = SOLVED.search(done.stdout)
    solved = match is not None
    match = match or NOT_SOLVED.search(done.stdout)
    episodes, steps, train_s = int(match[1]), int(match[2]), float(match[3])
    return dict(solved=solved, episodes=episodes, steps=steps, train_s=train_s, wall_s=wall, cpu_s=cpu,
                load=load)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", nargs="+", choices=sorted(SCRIPTS), default=["dqn", "a2c"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed for one run")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPU cores, python {sys.version.split()[0]}")
    print("| script | seed | solved at episode | env steps | training s | wall s | CPU s | load avg before |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    summary = []
    for algo in args.algos:
        walls = []
        solved_count = 0
        for seed in args.seeds:
            r = run_once(SCRIPTS[algo], seed, args.timeout)
            solved_count += r["solved"]
            walls.append(r["wall_s"] if r["solved"] else float("inf"))
            episode = str(r["episodes"]) if r["solved"] else f"not solved in {r['episodes']}"
            print(f"| {SCRIPTS[algo].name} | {seed} | {episode} | {r['steps']} | {r['train_s']:.1f} | "
                  f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['load']:.2f} |", flush=True)
        median = statistics.median(walls)
        summary.append(f"{SCRIPTS[algo].name}: solved {solved_count} of {len(args.seeds)}, "
                       f"median wall to the stop rule {median:.1f} s")
    print()
    print("\n".join(summary))


if __name__ == "__main__":
    main()
