"""The CartPole world of the CartPole chapters: gymnasium's CartPole-v1, its window, and the GIF of --record.

A cart on a track carries a pole on a hinge. State, 4 numbers: cart position, cart velocity, pole angle,
pole angular velocity. Actions, 2: push the cart left (0) or right (1). Every step the pole stays up earns
+1; the episode ends (terminated) when the pole leans more than 12 degrees or the cart leaves the track,
and gymnasium stops it after 500 steps (truncated: a time limit, not a failure).

make_env opens the gymnasium window only with --render and only where one can open (otherwise it says so in
one line and runs headless). With --record it draws off-screen instead and keeps every frame, at half size,
for an animated GIF written when the env is closed.

This file is the same in 1-dqn and 2-actor-critic (a test compares the bytes), so that each folder stays
standalone without the copies drifting apart.
"""
import os

# --render: an OpenGL-accelerated SDL window segfaulted beside TensorFlow (Mesa, Linux); the small
# CartPole window needs no acceleration. Set before pygame is imported (gymnasium imports it to draw).
os.environ.setdefault("SDL_FRAMEBUFFER_ACCELERATION", "0")

import gymnasium as gym  # noqa: E402

from plumbing import ensure_writable, half_size, headless_unless_display, write_gif  # noqa: E402

STATE_SIZE = 4                 # CartPole-v1: cart position, cart velocity, pole angle, pole angular velocity
ACTION_SIZE = 2                # push the cart left or right
SECONDS_PER_STEP = 0.02        # CartPole runs at 50 steps a second: the pace of a recorded GIF


# CartPole-v1; with --render the gymnasium window, or a one-line note and headless if it cannot open.
# record: the GIF file of --record (None: no recording); its folder is made, and checked, here.
def make_env(render, record=None):
    if record is not None:                # --record draws every frame off-screen; no window then
        ensure_writable(record.parent.resolve())
        if render:
            print("recording: the frames are drawn off-screen, so no window opens")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")     # pygame draws in memory: no screen, no sound
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        return RecordFrames(gym.make("CartPole-v1", render_mode="rgb_array"), record)
    if headless_unless_display(render):
        env = gym.make("CartPole-v1", render_mode="human")
        try:
            env.reset()                   # opens the window (needs pygame and a display)
            return env
        except Exception as error:
            env.close()
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"cannot open the CartPole window ({reason}): running headless")
    return gym.make("CartPole-v1")


class RecordFrames(gym.Wrapper):
    """--record: the picture after every reset and every step, at half size (300 x 200 pixels); close()
    writes them to `path` as an animated GIF that plays at CartPole's pace (nothing if no game began)."""

    def __init__(self, env, path):
        super().__init__(env)
        self.path = path
        self.frames = []

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        self.frames.append(half_size(self.env.render()))
        return observation, info

    def step(self, action):
        result = self.env.step(action)
        self.frames.append(half_size(self.env.render()))
        return result

    def close(self):
        self.env.close()
        if self.frames:
            write_gif(self.path, self.frames, SECONDS_PER_STEP)
            self.frames = []              # written once, even if closed again
