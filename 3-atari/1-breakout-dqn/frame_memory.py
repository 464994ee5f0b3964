"""The replay memory of the Breakout DQN: every 84x84 frame stored once, the 4-frame states rebuilt from indices.

The book kept a deque of (history, action, reward, next_history, dead), two float stacks of four frames per
transition: about 22 GB for 400,000 transitions. This ring buffer keeps each uint8 frame once (2.8 GB) and
gives the same minibatches: the states it rebuilds are exactly the histories the agent saw (the tests check).

    memory.start_history(state)                        the first frame of a game
    memory.append(action, reward, next_state, dead)    one transition (the agent's append_sample)
    memory.sample(batch_size) -> states, actions, rewards, next_states, deads   (states: batch x 4 x 84 x 84)
    check_sizes(parser, memory_size, train_start, batch_size, training)   --memory-size and --train-start
"""
import numpy as np

from environment import FRAME_SIZE, HISTORY_LENGTH
from plumbing import check_memory

# The memory one slot takes: its 84x84 uint8 frame, action (int32), reward and dead (float32), start and valid flags.
BYTES_PER_FRAME = FRAME_SIZE * FRAME_SIZE + 4 + 4 + 4 + 1 + 1


class ReplayMemory:
    """A ring buffer of single frames; a state is the 4 slots ending at an index, newest first.

    Slot i holds a frame and, when `valid[i]`, the transition that led to it: (state = stack ending at
    i - 1, actions[i], rewards[i], next_state = stack ending at i, deads[i]). `starts[i]` marks a frame
    that begins a history (a new game, or the frame right after a lost life): stacks never reach
    behind it and repeat it instead, exactly as the agent's own history did. So no stack mixes games
    or lives, and each frame costs 84*84 bytes once.
    """

    def __init__(self, size):
        self.size = size
        self.frames = np.zeros((size, FRAME_SIZE, FRAME_SIZE), np.uint8)
        self.actions = np.zeros(size, np.int32)
        self.rewards = np.zeros(size, np.float32)
        self.deads = np.zeros(size, np.float32)
        self.starts = np.zeros(size, bool)
        self.valid = np.zeros(size, bool)
        self.cursor = 0          # the slot written next (the oldest one once the memory is full)
        self.count = 0

    def __len__(self):
        return self.count

    def _write(self, frame):
        index = self.cursor
        self.frames[index] = frame
        self.cursor = (index + 1) % self.size
        self.count = min(self.count + 1, self.size)
        return index

    # The first frame of a game: no transition leads to it.
    def start_history(self, state):
        index = self._write(state)
        self.starts[index], self.valid[index] = True, False

    # One transition: only its new frame is stored; after a lost life the history restarts from it.
    def append(self, action, reward, next_state, dead):
        index = self._write(next_state)
        self.actions[index], self.rewards[index], self.deads[index] = action, reward, dead
        self.starts[index], self.valid[index] = dead, True

    # Stacks (batch, 4, 84, 84) ending at the given slots, repeating a history's first frame.
    def stacks(self, ends):
        slots = (np.asarray(ends)[:, np.newaxis] - np.arange(HISTORY_LENGTH)) % self.size
        for back in range(1, HISTORY_LENGTH):
            newer = slots[:, back - 1]
            slots[:, back] = np.where(self.starts[newer], newer, slots[:, back])
        return self.frames[slots]

    # Uniform minibatch of transitions whose 4 older frames are all still in memory. The newest slot is
    # always one (a memory of more than HISTORY_LENGTH frames: see check_sizes), so this ends.
    def sample(self, batch_size):
        chosen = np.empty(0, np.int64)
        while len(chosen) < batch_size:
            candidates = np.random.randint(0, self.count, 2 * batch_size)
            usable = self.valid[candidates] & ((candidates - self.cursor) % self.size >= HISTORY_LENGTH)
            chosen = np.concatenate((chosen, candidates[usable]))
        chosen = chosen[:batch_size]
        return (self.stacks(chosen - 1), self.actions[chosen], self.rewards[chosen],
                self.stacks(chosen), self.deads[chosen])


def check_sizes(parser, memory_size, train_start, batch_size, training=True):
    """Refuse, as argparse errors (exit 2), sizes that would hang or never train: sample() needs a minibatch's
    worth of usable transitions, and training starts only once train_start frames are in memory. When `training`,
    also a memory that this machine could not hold once full (--memory-size 100000000 would need 658 GiB)."""
    if memory_size < batch_size + HISTORY_LENGTH:
        parser.error(f"argument --memory-size: the replay memory must hold a minibatch of {batch_size} "
                     f"transitions and a {HISTORY_LENGTH}-frame history, at least {batch_size + HISTORY_LENGTH}"
                     f" frames; got {memory_size}")
    if train_start < batch_size:
        parser.error(f"argument --train-start: training needs a minibatch of {batch_size} transitions in "
                     f"memory first; got {train_start}")
    if train_start > memory_size:
        parser.error(f"argument --train-start: {train_start} frames never fit in a replay memory of "
                     f"--memory-size {memory_size}, so training would never start")
    if training:
        check_memory(parser, "--memory-size", memory_size * BYTES_PER_FRAME,
                     f"a replay memory of {memory_size:,} frames ({BYTES_PER_FRAME:,} bytes each)")
