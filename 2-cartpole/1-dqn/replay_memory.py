"""The replay memory of the DQN chapter: the book's deque of the last 2000 transitions, as one numpy array.

The book kept <s, a, r, s', done> tuples in a deque(maxlen=2000), drew a mini-batch with
random.sample(memory, 64) and stacked it into arrays on every training step. Here every transition is one
float32 row of a preallocated array (the layout of transitions.py), so a mini-batch is one fancy-index and
one tensor. What is stored, and how a mini-batch is drawn, is the book's; only the container differs.
책의 deque와 같은 일을 하는 리플레이 메모리입니다: 담는 것과 미니배치를 뽑는 방법은 책과 같고, 그릇만 다릅니다.
"""
import random

from transitions import transition_rows, write_transition


class ReplayMemory:
    """A ring buffer of the last `capacity` transitions; once full, a new row overwrites the oldest."""

    def __init__(self, capacity, state_size):
        self.capacity = capacity
        self.rows = transition_rows(capacity, state_size)
        self.size = 0           # rows in use
        self.next_index = 0     # where the next transition goes

    def append(self, state, action, reward, next_state, done):
        write_transition(self.rows[self.next_index], state, action, reward, next_state, done)
        self.next_index = (self.next_index + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    # Random rows without replacement, like the book's random.sample(memory, batch_size).
    def sample(self, batch_size):
        return self.rows[random.sample(range(self.size), batch_size)]

    def __len__(self):
        return self.size
