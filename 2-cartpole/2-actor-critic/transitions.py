"""One transition <s, a, r, s', done> as one float32 row: how both CartPole agents hand their experience to
their compiled training step, as one tensor instead of five (calling into TensorFlow is what costs here).

    state (4) | action | reward | next_state (4) | done      (done = 1.0 only for a real failure)

The DQN's replay memory is an array of such rows; the A2C learns from one row per step.
속도를 위한 저장 형식일 뿐 장의 내용이 아니므로, 책과 함께 읽을 때는 건너뛰어도 됩니다.
This file is the same in 1-dqn and 2-actor-critic (a test compares the bytes), so that each folder stays
standalone without the copies drifting apart.
"""
import numpy as np
import tensorflow as tf


def transition_rows(count, state_size):
    """`count` empty rows, all zeros."""
    return np.zeros((count, 2 * state_size + 3), dtype=np.float32)


def write_transition(row, state, action, reward, next_state, done):
    """Fill one row (a view into the array of rows) with one transition."""
    n = len(state)
    row[:n] = state
    row[n] = action
    row[n + 1] = reward
    row[n + 2:2 * n + 2] = next_state
    row[2 * n + 2] = done


def split_transitions(rows, state_size):
    """The columns of a batch of rows, inside the compiled step: states, actions, rewards, next_states, dones."""
    n = state_size
    return (rows[:, :n], tf.cast(rows[:, n], tf.int32), rows[:, n + 1],
            rows[:, n + 2:2 * n + 2], rows[:, 2 * n + 2])
