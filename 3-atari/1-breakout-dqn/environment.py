"""Breakout for the DQN chapter: the game, the book's pre_processing, and the 4-frame history the agent sees.

    make_env(render, record)           the book's BreakoutDeterministic-v4 = ALE/Breakout-v5, 4 frames a step
    start_game(env, no_op_steps, seed) reset, then FIRE a random 1..no_op_steps times -> (screen, lives)
    pre_processing(observe)            210x160 RGB screen -> 84x84 grey uint8
    new_history(state)                 4 copies of one frame (a new game, or after a lost life)
    next_history_of(history, state)    the newest frame in front, the oldest one dropped

The agent's 3 actions are FIRE, RIGHT, LEFT; ALE_ACTION[action] is the emulator's action it presses.
"""
import random

import ale_py
import cv2
import gymnasium
import numpy as np

# The agent's 3 actions and the ALE action each one presses (ALE: 0 NOOP, 1 FIRE, 2 RIGHT, 3 LEFT).
FIRE, RIGHT, LEFT = 0, 1, 2
ALE_ACTION = (1, 2, 3)
FRAME_SIZE = 84
HISTORY_LENGTH = 4


def make_env(render=False, record=False):
    """Breakout with the book's BreakoutDeterministic-v4 settings: 4 frames per step, no sticky actions.
    record=True keeps the colour screen for env.render() (--record) instead of opening a window."""
    gymnasium.register_envs(ale_py)
    return gymnasium.make("ALE/Breakout-v5", frameskip=4, repeat_action_probability=0.0,
                          render_mode="rgb_array" if record else "human" if render else None)


# Reset the game and press FIRE a random 1..no_op_steps times, so games do not all start alike.
def start_game(env, no_op_steps, seed=None):
    observe, info = env.reset(seed=seed)
    for _ in range(random.randint(1, no_op_steps)):
        observe, _, _, _, info = env.step(ALE_ACTION[FIRE])
    return observe, info["lives"]


# 210x160 RGB screen -> 84x84 grey uint8 (the network divides by 255 itself).
def pre_processing(observe):
    grey = cv2.cvtColor(observe, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA)


# A fresh history: 4 copies of one frame. Used at the start of a game and after a lost life.
def new_history(state):
    return np.repeat(state[np.newaxis], HISTORY_LENGTH, axis=0)


# Push the newest frame in front and drop the oldest one (channel 0 is the newest, as in the book).
def next_history_of(history, next_state):
    return np.concatenate((next_state[np.newaxis], history[:-1]), axis=0)
