"""Breakout for the A3C chapter, in two preprocessings that present the same batched interface.

    games.reset()                -> states                       (N, 84, 84, 4) uint8, one history per game
    games.step(actions)          -> next_states, rewards, dead, finished
        actions:  (N,) agent actions 0, 1, 2 = the emulator's FIRE, RIGHT, LEFT
        rewards:  (N,) the real game rewards (not clipped: the agent clips them for learning)
        dead:     (N,) True where this step lost a life or ended the game (the return bootstraps 0 there)
        finished: [(game, score, duration), ...] for the games that ended on this step
    A game that ends is reset at once, so next_states[i] is then the first history of the next game of slot i
    ("same step" reset): every step is a real transition, and nothing of one game reaches the next.

- BookBreakout ("book"): one game with the book's preprocessing, used with --envs-per-thread 1. After a reset
  FIRE is pressed a random 1..30 times; a frame is the maximum of two consecutive observations, resized to
  84x84 by OpenCV; the history starts as four copies of the first frame and starts again after a lost life,
  when FIRE is pressed for the agent to relaunch the ball (not a sample: the policy did not choose it).
- VectorBreakout ("ale-vector"): N games stepped by the Arcade Learning Environment's own C++ threads
  (ale_py.vector_env.AtariVectorEnv, outside Python's interpreter lock), used with --envs-per-thread N > 1.
  Its preprocessing is ALE's, not the book's: one FIRE and up to 29 single-frame NOOPs after a reset; a frame is the
  maximum of the last two emulator frames inside the frame skip; the history at a reset is three black frames
  and the first frame; after a lost life the game plays on with its history and nothing is pressed for the
  agent (it learns to press FIRE itself).

An agent is always played with the preprocessing it was trained with (breakout_a3c.py writes it beside the
weights): WatchedBreakout makes that game for watching (--play, play_a3c_model.py), with a colour screen for a
window or --record, and ends a game that is stuck.
"""
import time

import ale_py
import cv2
import gymnasium
import numpy as np
from ale_py.vector_env import AtariVectorEnv
from gymnasium.vector import AutoresetMode

STATE_SIZE = (84, 84, 4)    # four 84x84 grayscale frames
ACTIONS = (1, 2, 3)         # agent action 0, 1, 2 -> the emulator's FIRE, RIGHT, LEFT (no NOOP)
FIRE = 1
NO_OP_MAX = 30              # after a reset, press FIRE a random 1..30 times (random start positions)
PREPROCESSINGS = ("book", "ale-vector")


def pre_processing(next_observe, observe):
    """The book's A3C pre-processing: the maximum of the last two observations (Atari sprites flicker),
    grayscale (done by the emulator here), resized to 84x84, uint8."""
    frame = np.maximum(next_observe, observe)
    return cv2.resize(frame, (84, 84), interpolation=cv2.INTER_AREA)


class BookBreakout:
    """One game of BreakoutDeterministic-v4 (the book's) = ALE/Breakout-v5, 4 frames a step, no sticky actions."""
    preprocessing = "book"
    num_envs = 1

    def __init__(self, seed=None, rng=None, render_mode=None):
        gymnasium.register_envs(ale_py)
        self.env = gymnasium.make("ALE/Breakout-v5", frameskip=4, repeat_action_probability=0.0,
                                  obs_type="grayscale", render_mode=render_mode)
        self.seed = seed
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    def reset(self):
        observe, info = self.env.reset(seed=self.seed)
        self.seed = None                   # seed only the first reset; later ones continue the stream
        for _ in range(self.rng.integers(1, NO_OP_MAX + 1)):
            observe, _, _, _, info = self.env.step(FIRE)
        self.observe, self.lives = observe, info["lives"]
        self.scores, self.duration = np.zeros(1), 0     # the score so far, as VectorBreakout keeps it
        self.history = self.fresh_history(observe)
        return self.history

    @staticmethod
    def fresh_history(observe):
        frame = pre_processing(observe, observe)
        return np.repeat(frame[None, :, :, None], 4, axis=3)

    def step(self, actions):
        next_observe, reward, terminated, truncated, info = self.env.step(ACTIONS[int(actions[0])])
        frame = pre_processing(next_observe, self.observe)
        self.observe = next_observe
        history = np.concatenate([self.history[..., 1:], frame[None, :, :, None]], axis=3)
        dead = info["lives"] < self.lives
        self.lives = info["lives"]
        self.scores += reward
        self.duration += 1
        if dead and not (terminated or truncated):
            # Relaunch the ball (not a sample: the policy did not choose it); the history starts again.
            self.observe, fire_reward, terminated, truncated, info = self.env.step(FIRE)
            self.scores += fire_reward
            history = self.fresh_history(self.observe)
        finished = []
        if terminated or truncated:
            finished.append((0, float(self.scores[0]), self.duration))
            history = self.reset()
        self.history = history
        return history, np.array([reward], np.float32), np.array([dead or terminated or truncated]), finished

    def close(self):
        self.env.close()


# The games of the vector environment, the same for the agent's games and for the colour screen below.
VECTOR_SETTINGS = dict(
    frameskip=4, repeat_action_probability=0.0, noop_max=NO_OP_MAX, use_fire_reset=True, reward_clipping=False,
    episodic_life=False,                  # True would reset the whole game at a lost life
    life_loss_info=True,                  # terminated at every lost life; the game itself goes on
    autoreset_mode=AutoresetMode.SAME_STEP)


class VectorBreakout:
    """N games of Breakout in ALE's vector environment (same settings as BookBreakout: 4 frames a step, no
    sticky actions, the minimal action set NOOP, FIRE, RIGHT, LEFT), each game reset as soon as it ends."""
    preprocessing = "ale-vector"

    def __init__(self, num_envs, seed=None, num_threads=0):
        self.num_envs = num_envs
        self.seed = seed
        self.env = AtariVectorEnv("breakout", num_envs, num_threads=num_threads, **VECTOR_SETTINGS)
        self.actions = np.array(ACTIONS, dtype=np.int32)   # agent action -> index in NOOP, FIRE, RIGHT, LEFT

    def reset(self, seed=None):
        observe, info = self.env.reset(seed=self.seed if seed is None else seed)
        self.seed = None
        self.lives = info["lives"].copy()
        self.scores = np.zeros(self.num_envs)
        self.durations = np.zeros(self.num_envs, dtype=np.int64)
        return self.histories(observe)

    @staticmethod
    def histories(observe):
        """ALE's (N, 4, 84, 84) stacks as the network's (N, 84, 84, 4) histories."""
        return np.ascontiguousarray(observe.transpose(0, 2, 3, 1))

    def step(self, actions):
        observe, rewards, terminated, truncated, info = self.env.step(self.actions[actions])
        lives = info["lives"]
        # With life_loss_info every lost life is `terminated`; the game is over where a new game has begun
        # (same-step reset: its lives are back up) or the frame limit cut it short.
        game_over = truncated | (terminated & (lives > self.lives))
        dead = terminated | truncated
        self.lives = lives.copy()
        self.scores += rewards
        self.durations += 1
        finished = [(int(i), float(self.scores[i]), int(self.durations[i])) for i in np.flatnonzero(game_over)]
        self.scores[game_over] = 0.0
        self.durations[game_over] = 0
        return self.histories(observe), rewards.astype(np.float32), dead, finished

    def close(self):
        self.env.close()


class ColourScreen:
    """The colour screen of one vector-environment game, shown in a window and/or kept for --record. ALE's vector
    environment has no colour screen, so a second emulator, seeded alike and given the same actions, plays the
    very same game in colour (the emulator is deterministic). The window is Tk's (pygame's window hangs once
    TensorFlow is loaded); `frames`, when given, receives every (210, 160, 3) colour frame."""

    def __init__(self, seed, fps=30, scale=3, window=True, frames=None):
        self.env = AtariVectorEnv("breakout", 1, num_threads=1, grayscale=False, img_height=210, img_width=160,
                                  stack_num=1, maxpool=False, **VECTOR_SETTINGS)
        self.actions = np.array(ACTIONS, dtype=np.int32)
        self.frames, self.root = frames, None
        if window:
            try:
                self.open_window(fps, scale)
            except Exception:             # no Tk, or a display that does not answer: the caller decides
                self.env.close()
                raise
        self.reset(seed)

    def open_window(self, fps, scale):
        import tkinter
        self.tkinter, self.scale, self.delay = tkinter, scale, 1.0 / fps if fps else 0.0
        self.root = tkinter.Tk()          # raises tkinter.TclError where no window can open
        self.root.title("Breakout A3C")
        self.label = tkinter.Label(self.root, borderwidth=0)
        self.label.pack()
        self.shown_at = 0.0

    def reset(self, seed):
        observe, self.info = self.env.reset(seed=seed)
        self.show(observe)

    def step(self, actions):
        observe, _, _, _, self.info = self.env.step(self.actions[actions])
        self.show(observe)

    def show(self, observe):
        frame = observe[0, 0]                                          # (210, 160, 3) RGB
        if self.frames is not None:
            self.frames.append(frame.copy())
        if self.root is None:
            return
        ppm = b"P6 %d %d 255 " % (frame.shape[1], frame.shape[0]) + frame.tobytes()
        self.image = self.tkinter.PhotoImage(data=ppm, format="PPM").zoom(self.scale)
        self.label.configure(image=self.image)
        time.sleep(max(0.0, self.shown_at + self.delay - time.perf_counter()))
        self.root.update()                                             # draw, and keep the window responsive
        self.shown_at = time.perf_counter()

    def close(self):
        self.env.close()
        if self.root is not None:
            self.root.destroy()


def make_games(num_envs, seed=None, rng=None, num_threads=0):
    """The games of one actor-learner: the book's single game, or N games in ALE's vector environment."""
    if num_envs == 1:
        return BookBreakout(seed=seed, rng=rng)
    return VectorBreakout(num_envs, seed=seed, num_threads=num_threads)


class WatchedBreakout:
    """The game that --play and play_a3c_model.py watch, with the preprocessing the weights were trained with:
    BookBreakout (the emulator's own window, or its colour frames for --record) or one VectorBreakout game beside a
    ColourScreen that plays the same game in colour (a window that cannot open means headless, with a note).
    A greedy agent can loop for ever without breaking a brick (say, when it never presses FIRE after a lost life),
    so a game is ended after `max_episode_steps` agent steps and counted as it stands, and a new one starts.

        reset()       -> states
        step(actions) -> next_states, finished      (finished as in the games' step)
    """

    def __init__(self, preprocessing, max_episode_steps, seed=None, rng=None, render=False, frames=None):
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.max_episode_steps, self.frames, self.screen = max_episode_steps, frames, None
        if preprocessing == "book":
            render_mode = "rgb_array" if frames is not None else "human" if render else None
            self.games = BookBreakout(seed=seed, rng=self.rng, render_mode=render_mode)
            return
        if render or frames is not None:  # a second emulator plays the same game in colour (same seed, same actions)
            seed = int(self.rng.integers(2 ** 31)) if seed is None else seed
            try:
                self.screen = ColourScreen(seed, window=render, frames=frames)
            except Exception as error:    # tkinter missing, or DISPLAY names a screen that does not answer
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                print(f"cannot open a window ({reason}): running headless")
                self.screen = None if frames is None else ColourScreen(seed, window=False, frames=frames)
        self.games = VectorBreakout(1, seed=seed)

    def reset(self):
        self.steps, self.played = 0, 0    # agent steps of this game, games finished
        return self.games.reset()

    def step(self, actions):
        states, _, _, finished = self.games.step(actions)
        if self.screen is not None:
            self.screen.step(actions)
        elif self.frames is not None:
            self.frames.append(self.games.env.render())
        self.steps += 1
        if not finished and self.steps >= self.max_episode_steps:   # stuck: count the game as it stands, start anew
            finished = [(0, float(self.games.scores[0]), self.steps)]
            print(f"(game {self.played + 1} stopped at the {self.max_episode_steps}-step cap)")
            if self.screen is None:
                states = self.games.reset()
            else:                                           # a new seed for both emulators, to stay in step
                new_seed = int(self.rng.integers(2 ** 31))
                states = self.games.reset(seed=new_seed)
                self.screen.reset(new_seed)
        if finished:
            self.steps, self.played = 0, self.played + len(finished)
        return states, finished

    def close(self):
        self.games.close()
        if self.screen is not None:
            self.screen.close()
