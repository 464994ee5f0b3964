"""Taking turns: at most one actor-learner per CPU core plays at a time (used by breakout_a3c.py).

Python threads share one interpreter lock, so on a 2-core machine 8 threads all playing at once only fight over
it and run slower than 1 thread. With Turns, all 8 actor-learners (8 games, 8 local networks) take part, but
only `slots` of them play at once; after each global update a thread hands its turn to the one that has waited
longest. For the same reason TensorFlow runs each small kernel on the thread that called it, not on a pool of
helper threads of its own (one_thread_per_kernel). A Player is an actor-learner thread whose error stops the
others.
"""
import collections
import os
import threading
from pathlib import Path


def usable_cores():
    """CPU cores this process may use: the affinity mask (else the CPU count), capped by a container's CPU
    quota (cgroup v2 cpu.max or v1 cpu.cfs_quota_us; e.g. `docker --cpus 2` on a 64-core host gives 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    for quota_file, period_file in (("/sys/fs/cgroup/cpu.max", None),
                                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            fields = Path(quota_file).read_text().split()
            quota = fields[0]
            period = fields[1] if period_file is None else Path(period_file).read_text().strip()
            if quota not in ("max", "-1"):
                return max(1, min(cores, int(quota) // int(period)))
        except (OSError, ValueError, IndexError):
            continue
    return cores


def active_slots(threads, active_threads=None):
    """How many of `threads` actor-learners play at once: `active_threads` (at least 1), or one per usable core;
    never more than there are threads."""
    if active_threads is not None and active_threads < 1:
        raise ValueError(f"active_threads must be at least 1, got {active_threads}")
    return min(threads, active_threads or usable_cores())


def one_thread_per_kernel(threads=1):
    """Run each TensorFlow kernel on the Python thread that called it (TensorFlow's intra-op pool of 1 thread).
    The kernels here are small; handing them to a pool of helper threads costs more than it gains, and the
    workers already keep the cores busy. Must run before TensorFlow starts (before the first model is built);
    if it already has, its pools are kept as they are and this returns False.
    Also: every thread traces its own copies of the same functions, once each. TensorFlow's retracing detector
    (keyed by source code) counts those copies as "retracing" and warns; they are not, so drop that message."""
    import tensorflow as tf
    tf.get_logger().addFilter(lambda record: "triggered tf.function retracing" not in record.getMessage())
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        return True
    except RuntimeError:
        return False


class Player(threading.Thread):
    """An actor-learner thread: run() calls play_and_learn(); an error there is kept in `error` for the main
    thread to report, and sets `stop_event` so that the other threads stop too."""

    def __init__(self, name, stop_event):
        super().__init__(name=name, daemon=True)
        self.stop_event = stop_event
        self.error = None

    def run(self):
        try:
            self.play_and_learn()
        except Exception as error:            # reported by the main thread, which stops the others
            self.error = error
            self.stop_event.set()

    @staticmethod
    def stop_all(players):
        """Set the players' stop event, wait for every one of them to end; the first error any of them met, or None."""
        for player in players:
            player.stop_event.set()
        for player in players:
            player.join()
        return next((player.error for player in players if player.error is not None), None)


class Turns:
    """At most `slots` threads hold a turn at once; the others wait in a first-come, first-served queue.

    A thread that gives its turn back while others wait hands it straight to the one that waited longest, so
    it cannot take it again at once (a plain threading.Semaphore lets the releasing thread barge back in and
    starve the rest). Waiting threads sleep on an Event, which costs no interpreter lock.
    """

    def __init__(self, slots):
        self.free = slots
        self.lock = threading.Lock()
        self.waiting = collections.deque()

    def acquire(self):
        with self.lock:
            if self.free > 0 and not self.waiting:
                self.free -= 1
                return
            turn = threading.Event()
            self.waiting.append(turn)
        turn.wait()                            # set by release(): the slot was handed over to this thread

    def release(self):
        with self.lock:
            if self.waiting:
                self.waiting.popleft().set()
            else:
                self.free += 1

    # Let the longest-waiting thread play (if any waits) and queue up again behind it.
    # Returns True when other threads played in between.
    def pass_on(self):
        with self.lock:
            others_wait = bool(self.waiting)
        self.release()
        self.acquire()
        return others_wait

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
