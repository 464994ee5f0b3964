"""Watch (or measure) the A3C Breakout agent: load the trained actor-critic and play greedily.

The network, the environment and the frame pre-processing come from breakout_a3c.py, so what is played is
exactly what was trained. The action is argmax_a π(a|s); each game starts with a random 1..30 FIREs (as in
training: without them every greedy game would be the same game) and FIRE is pressed after every lost life to
relaunch the ball. The score is the game's real score over all five lives (rewards are neither clipped nor changed).

Run:  python 3-atari/2-breakout-a3c/play_a3c_model.py --episodes 10 --no-render
"""
import argparse
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))                     # import this folder's breakout_a3c.py

import ale_py
import gymnasium
import keras
import numpy as np
import tensorflow as tf

from breakout_a3c import ACTIONS, FIRE, NO_OP_MAX, build_model, load_weights, pre_processing

TRAINED = HERE / "save_model" / "breakout_a3c_trained.weights.h5"
MAX_EPISODE_STEPS = 10_000      # a greedy agent can loop forever without breaking a brick: cap a game


def play(model, episodes, render, seed=None, max_episode_steps=MAX_EPISODE_STEPS, sample=False):
    gymnasium.register_envs(ale_py)
    env = gymnasium.make("ALE/Breakout-v5", frameskip=4, repeat_action_probability=0.0,
                         obs_type="grayscale", render_mode="human" if render else None)
    policy_of = tf.function(lambda states: model(states, training=False)[0][0],
                            input_signature=[tf.TensorSpec((None, 84, 84, 4), tf.uint8)])
    rng = np.random.default_rng(seed)

    def get_action(history):              # argmax_a π(a|s), or a ~ π(a|s) with --sample
        policy = policy_of(tf.constant(history)).numpy()
        return int(rng.choice(len(policy), p=policy / policy.sum())) if sample else int(np.argmax(policy))
    scores = []
    for episode in range(1, episodes + 1):
        observe, info = env.reset(seed=seed if episode == 1 else None)
        # Breakout without sticky actions is deterministic: as in the book, FIRE a random 1..30 times first,
        # so that the games differ (otherwise a greedy agent plays the same game N times).
        for _ in range(rng.integers(1, NO_OP_MAX + 1)):
            observe, _, _, _, info = env.step(FIRE)
        lives, score, steps, capped = info["lives"], 0.0, 0, False
        frame = pre_processing(observe, observe)
        history = np.repeat(frame[None, :, :, None], 4, axis=3)
        while True:
            action = get_action(history)
            next_observe, reward, terminated, truncated, info = env.step(ACTIONS[action])
            frame = pre_processing(next_observe, observe)
            observe = next_observe
            history = np.concatenate([history[..., 1:], frame[None, :, :, None]], axis=3)
            score += reward
            steps += 1
            if terminated or truncated:
                break
            if steps >= max_episode_steps:
                capped = True
                break
            if info["lives"] < lives:                 # lost a life: relaunch the ball, fresh history
                lives = info["lives"]
                observe, reward, terminated, truncated, info = env.step(FIRE)
                score += reward
                if terminated or truncated:
                    break
                frame = pre_processing(observe, observe)
                history = np.repeat(frame[None, :, :, None], 4, axis=3)
        scores.append(score)
        note = f" (stopped at the {max_episode_steps}-step cap)" if capped else ""
        print(f"episode: {episode} | score: {score:.1f} | steps: {steps}{note}", flush=True)
    env.close()
    return scores


# ---- plumbing: arguments, display check (safe to skip) ----
def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def display_available():
    """ALE opens its own window (SDL); on Linux that needs an X or Wayland display."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Play Breakout greedily with the trained A3C agent.")
    parser.add_argument("--episodes", type=positive_int, default=10, help="games to play")
    parser.add_argument("--load", type=Path, default=TRAINED, help="weights to play (default: the trained ones)")
    parser.add_argument("--render", action=argparse.BooleanOptionalAction, default=False,
                        help="show the game in a window")
    parser.add_argument("--max-episode-steps", type=positive_int, default=MAX_EPISODE_STEPS,
                        help="end a game after this many agent steps (a greedy agent may stall)")
    parser.add_argument("--sample", action="store_true",
                        help="sample actions from π(a|s) as in training instead of playing greedily")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.seed is not None:
        random.seed(args.seed)
        np.random.seed(args.seed)
        keras.utils.set_random_seed(args.seed)
    render = args.render
    if render and not display_available():
        print("no display found: running headless (pass --render on a machine with a display)")
        render = False
    model = build_model()
    load_weights(model, args.load, "train them with: python 3-atari/2-breakout-a3c/breakout_a3c.py")
    scores = play(model, args.episodes, render, args.seed, args.max_episode_steps, args.sample)
    print(f"mean score: {np.mean(scores):.1f} over {len(scores)} episodes")


if __name__ == "__main__":
    main()
