"""Which layers of the Breakout DQN gain from bfloat16? The minibatch and the greedy call, timed per pattern.

    python benchmarks/precision_layers.py                         # every pattern, 2 TensorFlow threads
    python benchmarks/precision_layers.py --threads 16 --patterns ffff bbbb

A pattern gives the maths of the four hidden layers in order (three convolutions, the 512-unit layer): b for
bfloat16, f for float32; the Q-value layer is float32 always, as in the chapter. `bbbb` is the chapter's
--precision bfloat16 and `ffff` its float32. Each pattern builds the chapter's own agent (breakout_dqn.DQNAgent in
bfloat16) and switches the layers marked f back to float32 maths (the weights are float32 either way), then times
the chapter's own compiled calls: train_step on a minibatch of 32 (the target network's pass included) and greedy on
one history. Patterns are timed in turn, twice over; the better median of the two rounds is kept.

First, one matmul the size of the 512-unit layer's at batch 256 (3136 x 512) in both precisions: what the CPU's
bfloat16 units give where nothing else gets in the way (--threads 1 for the figure of one core).
"""
import argparse
import time

import numpy as np

from common import load_average, load_module  # noqa: E402  (benchmarks/common.py)

PATTERNS = ("ffff", "bbbb", "fbbb", "ffbb", "fffb", "bbbf", "fbbf")


def matmul_ms(tf, dtype, repeats=20):
    a = tf.cast(tf.random.normal((256, 3136)), dtype)
    b = tf.cast(tf.random.normal((3136, 512)), dtype)
    for _ in range(3):
        tf.matmul(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        tf.matmul(a, b).numpy()
    return (time.perf_counter() - start) / repeats * 1000


def agent_with(dqn, pattern):
    agent = dqn.DQNAgent(memory_size=10, precision="bfloat16")
    for model in (agent.model, agent.target_model):
        weighted = [layer for layer in model.layers[:-1] if layer.weights]     # the 3 convolutions, Dense(512)
        for layer, mark in zip(weighted, pattern):
            if mark == "f":
                layer.dtype_policy = "float32"
        for layer in model.layers:
            if not layer.weights:                   # Flatten computes as the convolution before it
                layer.dtype_policy = weighted[2].dtype_policy.name
    return agent


def timings(agent, batch, history, train_calls=25, greedy_calls=100):
    for _ in range(3):
        agent.train_step(*batch)
        agent.greedy(history)
    train = []
    for _ in range(train_calls):
        start = time.perf_counter()
        float(agent.train_step(*batch))
        train.append(time.perf_counter() - start)
    greedy = []
    for _ in range(greedy_calls):
        start = time.perf_counter()
        int(agent.greedy(history)[0])
        greedy.append(time.perf_counter() - start)
    return np.median(train) * 1000, np.median(greedy) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow threads (intra-op)")
    parser.add_argument("--patterns", nargs="+", default=list(PATTERNS), help="e.g. ffff bbbb fbbb")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for pattern in args.patterns:
        if len(pattern) != 4 or set(pattern) - {"b", "f"}:
            parser.error(f"a pattern is four letters b or f, got {pattern!r}")

    dqn = load_module("3-atari/1-breakout-dqn/breakout_dqn.py")
    import tensorflow as tf
    print(f"Breakout DQN layers in bfloat16 ({load_average()})")
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    f32, bf16 = matmul_ms(tf, tf.float32), matmul_ms(tf, tf.bfloat16)
    print(f"  matmul 256 x 3136 x 512 on {args.threads} thread(s): float32 {f32:.2f} ms, bfloat16 {bf16:.2f} ms"
          f" ({f32 / bf16:.2f}x)")

    rng = np.random.default_rng(args.seed)
    frames = lambda: rng.integers(0, 256, (32, 4, 84, 84), dtype=np.uint8)   # noqa: E731
    batch = [tf.constant(x) for x in (frames(), rng.integers(0, 3, 32).astype(np.int32),
                                      rng.random(32).astype(np.float32), frames(), np.zeros(32, np.float32))]
    history = tf.constant(rng.integers(0, 256, (4, 84, 84), dtype=np.uint8))
    best = {}
    for _ in range(2):
        for pattern in args.patterns:
            train, greedy = timings(agent_with(dqn, pattern), batch, history)
            old = best.get(pattern, (np.inf, np.inf))
            best[pattern] = (min(old[0], train), min(old[1], greedy))
    print(f"\n  {args.threads} TensorFlow threads; per agent step = a quarter of a minibatch + one greedy call")
    print("  | layers (c1 c2 c3 d512) | minibatch ms | greedy ms | network ms per agent step |")
    print("  |---|---:|---:|---:|")
    for pattern, (train, greedy) in best.items():
        print(f"  | {' '.join(pattern)} | {train:.2f} | {greedy:.2f} | {train / dqn.TRAIN_FREQ + greedy:.2f} |")
    print(f"({load_average()})")


if __name__ == "__main__":
    main()
