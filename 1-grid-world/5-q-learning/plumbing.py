"""Plumbing: the jobs every chapter needs that are not the chapter's lesson. Safe to skip while reading the book.

이 파일은 장(chapter)의 내용이 아닙니다: 저장, 중단 신호, 화면 확인, 그래프, GIF, 인자 검사처럼 모든 예제가
함께 쓰는 일을 모아 둔 배관(plumbing)입니다. 책과 함께 읽을 때는 건너뛰어도 됩니다.

Every chapter folder holds a copy of this file with the very same bytes (tests/test_plumbing.py compares them),
so a folder copied alone still runs. Change it in one folder, then copy it to the others.
Heavy libraries (TensorFlow, matplotlib, Pillow) are imported inside the functions that need them: a tabular
chapter that imports this file starts in a fraction of a second.

    saving      atomic_write, ensure_writable, load_weights, save_graph, frames_for, write_gif, half_size
    stopping    StopFlag, NEVER, stopped_before_training
    screens     display_available, window_refused, headless_unless_display, headless_unless_window
    runs        seed_everything, log_scalars, report_scores
    precision   cpu_flags, visible_gpus, bfloat16_hardware, choose_precision, dtype_policy,
                add_precision_argument, announce_precision
    arguments   positive_int, positive_float, non_negative, probability, seed_number, gif_path,
                add_seed_argument, add_watching_arguments, parse_arguments
"""
import argparse
import os
import random
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np


# ---- saving: never a half-written file ----
def atomic_write(path, write):
    """Call write(tmp) on a temp file beside `path`, then move it into place: never a half-written file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")   # keeps the suffix (.weights.h5 / .png / .csv)
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_writable(*folders):
    """Fail before training, in one line, if artefacts could not be saved in these folders (made if missing)."""
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as error:
            sys.exit(f"error: cannot write to {folder}: {error.strerror}")


def load_weights(model, path, how_to_make):
    """Load Keras weights, or exit with one line naming the file and how to make one."""
    try:
        model.load_weights(path)
    except Exception as error:            # missing, truncated, wrong architecture
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        # A wrong architecture: Keras says "... for object <Conv2D ...>:" and the reason on the next line.
        reason = lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]
        reason = reason.split(" Target variable:")[0]          # not the dump of the variable's values
        sys.exit(f"error: cannot load weights from {path} ({reason}); {how_to_make}")


def save_graph(path, x, scores, xlabel, title, window=100):
    """The scores (dots) and their running mean over the last `window` (line), as a PNG written atomically.
    matplotlib's Agg backend draws without a window."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x, scores = np.asarray(x, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.plot(x, scores, ".", markersize=2, alpha=0.5, label="score")
    window = min(window, len(scores))
    if window > 1:
        mean = np.convolve(scores, np.ones(window) / window, mode="valid")
        axes.plot(x[window - 1:], mean, "r-", label=f"mean of the last {window}")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("score")
    axes.set_title(title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=80))
    plt.close(figure)


def write_gif(path, frames, seconds_per_frame, max_frames=400):
    """An animated, looping GIF of `frames` (Pillow images or H×W×3 uint8 arrays), written atomically. A long
    recording keeps every k-th frame (each shown k times longer, so it plays at the real pace) to stay within
    `max_frames`; each frame gets a palette of its own colours."""
    from PIL import Image                               # Pillow comes with matplotlib
    step = max(1, -(-len(frames) // max_frames))
    images = []
    for frame in frames[::step]:
        image = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame, dtype=np.uint8))
        images.append(image.convert("RGB").quantize(colors=64))
    duration = max(20, round(1000 * seconds_per_frame * step))    # milliseconds per frame
    atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                  duration=duration, loop=0, optimize=True))
    print(f"recorded {len(images)} frames to {path}")


def frames_for(record):
    """--record FILE.gif: an empty list to keep the frames of what is played in (the GIF's folder made and checked
    first), or None without --record."""
    if record is None:
        return None
    ensure_writable(record.parent.resolve())
    return []


def half_size(frame):
    """An H×W×3 frame at half its height and width, each pixel the mean of four (thin lines stay visible)."""
    frame = frame[:frame.shape[0] // 2 * 2, :frame.shape[1] // 2 * 2].astype(np.uint16)
    return ((frame[0::2, 0::2] + frame[1::2, 0::2] + frame[0::2, 1::2] + frame[1::2, 1::2]) // 4).astype(np.uint8)


# ---- stopping: Ctrl-C and kill raise a flag, never an exception ----
class StopFlag:
    """Ctrl-C (SIGINT) and `kill` (SIGTERM) only raise this flag; every loop looks at it between steps, then
    stops, and the run saves once and exits 130. A second signal while saving changes nothing (the save goes
    on). No KeyboardInterrupt is ever raised: one raised inside a TensorFlow call or a garbage-collection
    callback can be lost (training goes on) or crash the process."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGINT, self.request)
        signal.signal(signal.SIGTERM, self.request)

    def request(self, signum, frame):
        self.requested = True


NEVER = type("Never", (), {"requested": False})()   # a stop flag that never stops (tests, benchmarks)


def stopped_before_training():
    """A stop signal came before the first training step: nothing to save, one line, exit 130."""
    print("interrupted before training started: nothing saved", file=sys.stderr)
    sys.exit(130)


# ---- screens: a window only where one can open ----
def display_available():
    """Is there a screen to draw on? On Linux a window needs an X or Wayland display (SSH sessions, servers
    and WSL without WSLg have none); Windows and macOS always have one."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def window_refused():
    """None when a window can open on this display, else the reason in a few words. ALE's own window (SDL) ends the
    whole process with a crash where DISPLAY names a screen that does not answer; Tk fails politely, so ask it."""
    try:
        import tkinter
        tkinter.Tk().destroy()
    except ImportError:
        return None                       # no Tk to ask: let the window try
    except tkinter.TclError as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else "TclError"
    return None


def headless_unless_display(render, how="pass --render on a machine with a display"):
    """`render`, or False after a one-line note when there is no display to draw on."""
    if render and not display_available():
        print(f"no display found: running headless ({how})")
        return False
    return render


def headless_unless_window(render):
    """Like headless_unless_display, and also False (one line) where the display does not answer."""
    render = headless_unless_display(render)
    if render and (refused := window_refused()):
        print(f"cannot open a window ({refused}): running headless")
        return False
    return render


# ---- runs: seeding, TensorBoard, the end of watching ----
def seed_everything(seed):
    """--seed: Python's random, numpy and (where the chapter uses it) Keras, which also seeds TensorFlow."""
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        if "keras" in sys.modules:
            sys.modules["keras"].utils.set_random_seed(seed)


def log_scalars(writer, step, **scalars):
    """TensorBoard scalars, one tf.summary.scalar each (view them: tensorboard --logdir <save dir>/summary)."""
    import tensorflow as tf
    with writer.as_default(step=step):
        for name, value in scalars.items():
            tf.summary.scalar(name, value)


def report_scores(scores, stop, digits=1, before_mean=()):
    """The end of watching: `interrupted` after a stop, then the lines in `before_mean` and the mean score
    when a game was finished; exit 130 after a stop."""
    if stop.requested:
        print("interrupted")
    if scores:
        for line in before_mean:
            print(line)
        print(f"mean score: {np.mean(scores):.{digits}f} over {len(scores)} episodes")
    if stop.requested:
        sys.exit(130)


# ---- precision: float32, or bfloat16 where the hardware makes it faster ----
PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_flags():
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo (an empty set elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def visible_gpus():
    """[(name, (major, minor) compute capability or None)] for each GPU that TensorFlow sees."""
    import tensorflow as tf
    gpus = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        gpus.append((details.get("device_name", gpu.name), details.get("compute_capability")))
    return gpus


def bfloat16_hardware(flags, gpus):
    """(True, why) where this hardware does bfloat16 matrix maths faster than float32, else (False, why).
    TensorFlow runs the networks on the first GPU when there is one; otherwise on the CPU."""
    if gpus:
        name, capability = gpus[0]
        if capability is not None and tuple(capability) >= (8, 0):
            return True, f"the GPU ({name}, compute capability {capability[0]}.{capability[1]}) has bfloat16 tensor cores"
        return False, f"the GPU ({name}) has no bfloat16 tensor cores (those need compute capability 8.0 or newer)"
    if "amx_bf16" in flags:
        return True, "the CPU has AMX bfloat16 units (amx_bf16)"
    if "avx512_bf16" in flags:
        return False, ("the CPU has AVX-512 BF16 but no AMX, and there bfloat16 measured slower than float32 "
                       "(see BENCHMARKS.md)")
    return False, "the CPU has no bfloat16 units: bfloat16 would be emulated, and slower"


def choose_precision(requested, hardware, auto_bfloat16=True):
    """(precision, why) for `--precision requested` on `hardware` = bfloat16_hardware(...). auto_bfloat16 says
    whether this chapter's network gains from bfloat16 at all where the hardware has it."""
    fast, why = hardware
    if requested != "auto":
        return requested, f"asked for; {why}"
    if fast and not auto_bfloat16:
        return "float32", f"auto: {why}, but this network measured no faster in bfloat16"
    return ("bfloat16" if fast else "float32"), f"auto: {why}"


def dtype_policy(precision):
    """Keras dtype policy of the hidden layers: bfloat16 maths on float32 weights, or plain float32."""
    return "mixed_bfloat16" if precision == "bfloat16" else "float32"


def add_precision_argument(parser, auto_bfloat16=True):
    """--precision auto|float32|bfloat16; auto_bfloat16=False for a network that bfloat16 never makes faster."""
    if auto_bfloat16:
        help = ("the network's maths: bfloat16 (weights stay float32) is faster only on a GPU with bfloat16 "
                "tensor cores or a CPU with AMX; auto picks it there and float32 elsewhere")
    else:
        help = ("the networks' maths: bfloat16 (weights stay float32) or float32; auto is float32, because this "
                "small network measured no faster in bfloat16")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=help)


def announce_precision(requested, auto_bfloat16=True):
    """Decide float32 or bfloat16 for this machine and say which, and why, in the run's first lines."""
    precision, why = choose_precision(requested, bfloat16_hardware(cpu_flags(), visible_gpus()), auto_bfloat16)
    print(f"precision: {precision} ({why})", flush=True)
    return precision


# ---- arguments: values checked by argparse (a bad one is a one-line error, exit 2) ----
def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not 0.0 < value < float("inf"):                     # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text}")
    return value


def non_negative(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not 0.0 <= value < float("inf"):                    # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def probability(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:                            # also rejects nan
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def seed_number(text):
    """--seed: an integer numpy accepts as a seed, 0 to 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**32 - 1, got {text}")
    return value


def gif_path(text):
    """--record FILE.gif: a path ending in .gif (the folder is made, and checked, before the run starts)."""
    path = Path(text)
    if path.suffix.lower() != ".gif":
        raise argparse.ArgumentTypeError(f"must be a file name ending in .gif, got {text!r}")
    return path


def add_seed_argument(parser, help="random seed (None: a different run each time)"):
    parser.add_argument("--seed", type=seed_number, default=None, metavar="N", help=help)


def add_watching_arguments(parser, trained, load_help, record_help="with --play: save the episodes played as an "
                           "animated GIF (no window needed)"):
    """--load PATH, --play (the shipped `trained` weights or --load, greedily, writing nothing) and --record."""
    parser.add_argument("--load", type=Path, default=None, metavar="PATH", help=load_help)
    parser.add_argument("--play", action="store_true",
                        help=f"do not train: play save_model/{Path(trained).name} (or --load) greedily; "
                             "writes nothing")
    parser.add_argument("--record", type=gif_path, default=None, metavar="FILE.gif", help=record_help)


def parse_arguments(parser, argv):
    """parser.parse_args(argv), and --record only together with --play where the script has --play."""
    args = parser.parse_args(argv)
    if getattr(args, "record", None) is not None and getattr(args, "play", True) is False:
        parser.error("argument --record: records what --play plays; add --play")
    return args
