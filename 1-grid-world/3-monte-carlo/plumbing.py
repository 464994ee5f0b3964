"""Plumbing: the jobs every chapter needs that are not the chapter's lesson. Safe to skip while reading the book.

이 파일은 장(chapter)의 내용이 아닙니다: 저장, 중단 신호, 화면 확인, 그래프, GIF, 인자 검사처럼 모든 예제가
함께 쓰는 일을 모아 둔 배관(plumbing)입니다. 책과 함께 읽을 때는 건너뛰어도 됩니다.

Every chapter folder holds a copy of this file with the very same bytes (tests/test_plumbing.py compares them),
so a folder copied alone still runs. Change it in one folder, then copy it to the others.
Libraries beyond Python's own (numpy, TensorFlow, matplotlib, Pillow, h5py) are imported inside the functions that
need them: importing this file takes milliseconds, so a script that imports it first can catch a stop signal from
its first instant (catch_signals_at_start), and a tabular chapter starts in a fraction of a second.

    saving      atomic_write, ensure_writable, try_save, keep_previous, finite, weights_image, save_weights_file,
                save_run_weights, run_facts,
                check_weights_file, load_weights, save_graph, frames_for, write_gif, half_size
    stopping    catch_signals_at_start (with quiet output once the terminal is closed), StopFlag, NEVER,
                stopped_before_training, finish
    screens     display_available, window_refused, headless_unless_display, headless_unless_window
    runs        seed_everything, log_scalars, report_scores
    precision   cpu_flags, visible_gpus, bfloat16_hardware, choose_precision, dtype_policy,
                add_precision_argument, announce_precision
    arguments   positive_int, positive_float, non_negative, probability, seed_number, gif_path, save_folder,
                memory_available, check_memory, add_seed_argument, add_watching_arguments, parse_arguments

What a reader can rely on (the README says it too): whatever happens — Ctrl-C, `kill`, a closed terminal, a full
or read-only disk, a rerun, a bad value or file — the last good checkpoint survives, the run says in one line what
happened and where things are, and the exit code says how it ended: 0 done, 1 an error (nothing was half-written),
2 a bad command line, 130 stopped by a signal (after saving once).
"""
import argparse
import math
import os
import random
import signal
import sys
import tempfile
from pathlib import Path


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


def try_save(what, folder, write, final):
    """Saving never crashes a run: call write(), and where that fails (a full or read-only disk, a folder where a
    file goes) say so in one line. A periodic save (final=False) then returns False and training goes on, to try
    again at the next save; atomic_write left the previous checkpoint as it was. A final save exits 1."""
    try:
        write()
        return True
    except Exception as error:            # OSError from the disk; h5py and Keras wrap some of them in other types
        reason = getattr(error, "strerror", None) or str(error)
        reason = (str(reason).strip().splitlines() or [type(error).__name__])[0]     # h5py's run over several lines
        if final:
            sys.exit(f"error: could not save {what} in {folder} ({reason}); the last checkpoint saved there is kept")
        print(f"could not save {what} in {folder} ({reason}): the last checkpoint there is kept; trying again at "
              "the next save", flush=True)
        return False


def previous_name(path, tag="previous"):
    """save_model/x.weights.h5 -> save_model/x.previous.weights.h5 (the same folder, the same endings)."""
    path = Path(path)
    stem, dot, endings = path.name.partition(".")
    return path.with_name(f"{stem}.{tag}{dot}{endings}")


def keep_previous(paths, resumed_from=None, folders=()):
    """A fresh run never overwrites an earlier run's files without a word: each file of `paths`, and each folder of
    `folders` (TensorBoard's) that holds something, is renamed to its previous_name, replacing an older previous
    copy, and one line says so. A run resumed (--load) from one of these very files goes on in place instead. A run
    resumed from a previous copy keeps the newer files as previous-2 (so the file it loaded is not replaced)."""
    import shutil
    paths, folders = [Path(path) for path in paths], [Path(folder) for folder in folders]
    resumed = Path(resumed_from).resolve() if resumed_from is not None else None
    if resumed is not None and resumed in {path.resolve() for path in paths}:
        return []
    tag = "previous-2" if resumed in {previous_name(path).resolve() for path in paths} else "previous"
    earlier = [path for path in paths if path.is_file()]
    earlier += [folder for folder in folders if folder.is_dir() and any(folder.iterdir())]
    kept = []
    for path in earlier:
        target = previous_name(path, tag)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(path, target)
        kept.append(target)
    if kept:
        print(f"an earlier run's files are kept as {', '.join(str(path) for path in kept)}", flush=True)
    return kept


def finite(weights):
    """True when every number of `weights` (a list of arrays, e.g. model.get_weights()) is finite (no NaN, no inf)."""
    import numpy as np
    return all(np.isfinite(np.asarray(weight, dtype=np.float64)).all() for weight in weights)


def weights_image(model):
    """The Keras weights file of `model` (what model.save_weights writes), built in memory: an io.BytesIO.

    HDF5 must never write to a disk that fails: after a failed write (a full disk) it keeps handles to a file it has
    already freed, and the process crashes as it exits (a segmentation fault, exit 139), long after the error was
    handled (h5py issue #914, a bug of the HDF5 library). model.save_weights takes only a file name, so this runs
    the code behind it, which also takes an io.BytesIO (keras.src.saving.saving_lib, the same in Keras 3.3 to 3.15).
    None where a later Keras has moved that code: save_weights_file then lets HDF5 write the file, as Keras does."""
    import io
    try:
        from keras.src.saving import saving_lib
        image = io.BytesIO()
        store = saving_lib.H5IOStore(image, mode="w")
        saving_lib._save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
        store.close()
    except (ImportError, AttributeError, TypeError):
        return None
    return image


def save_weights_file(model, path, add=None):
    """The weights file of `model` at `path`, with whatever add(h5py.File) puts in it too (facts, an optimiser's
    state), written atomically: the weights and what goes with them never disagree, and the file stays a plain Keras
    weights file (model.load_weights reads it). Built in memory (weights_image), so a full disk is an ordinary
    OSError from Python's own write."""
    import h5py                            # Keras's own dependency for .weights.h5 files
    image = weights_image(model)
    if image is not None and add is not None:
        with h5py.File(image, "a") as file:
            add(file)

    def write(tmp):
        if image is not None:
            Path(tmp).write_bytes(image.getvalue())
            return
        model.save_weights(tmp)            # a Keras without the code weights_image uses: as model.save_weights does
        if add is not None:
            with h5py.File(tmp, "a") as file:
                add(file)
    atomic_write(path, write)


def save_run_weights(model, path, curve=None, **facts):
    """The weights and, in the same file, what a resumed run goes on from: `facts` (numbers or text, HDF5 attributes
    run_<name>) and `curve` (rows of numbers, dataset run_curve), written by save_weights_file."""
    import numpy as np

    def add(file):
        file.attrs.update({f"run_{key}": value for key, value in facts.items()})
        if curve is not None:
            rows = np.asarray(curve, dtype=np.float64)
            file.create_dataset("run_curve", data=rows.reshape(len(rows), -1))
    save_weights_file(model, path, add)


def run_facts(path, checks=None):
    """The facts save_run_weights stored with the weights (plus "curve": a list of rows, [] when none), or {} for a
    file without them. `checks` maps a fact to a test it must pass (e.g. {"epsilon": lambda e: 0 <= e <= 1}); a
    fact of the wrong type or range, or a curve that is not finite, exits with one line."""
    import numpy as np
    import h5py
    check_weights_file(path, "pass a file saved by this script")
    try:
        with h5py.File(path, "r") as file:
            facts = {key[4:]: file.attrs[key] for key in file.attrs if key.startswith("run_")}
            curve = file["run_curve"][()] if "run_curve" in file else np.zeros((0, 0))
        facts = {key: value.item() if hasattr(value, "item") else value for key, value in facts.items()}
        for key, check in (checks or {}).items():
            if key in facts and not check(facts[key]):
                raise ValueError(f"{key} = {facts[key]!r} is out of range")
        if not np.isfinite(curve).all():
            raise ValueError("its curve holds numbers that are not finite")
    except (OSError, KeyError, ValueError, TypeError) as error:
        sys.exit(f"error: cannot read what {path} stores beside its weights ({error}); train anew without --load")
    if facts:
        facts["curve"] = curve.tolist()
    return facts


def check_weights_file(path, how_to_make):
    """Exit with one line when `path` exists but is not a regular file (a folder; a FIFO, whose reading would
    wait for ever)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        sys.exit(f"error: cannot load weights from {path} (not a regular file); {how_to_make}")


def load_weights(model, path, how_to_make):
    """Load Keras weights, or exit with one line naming the file and how to make one. Weights that are not all
    finite numbers (a run that diverged) are refused the same way."""
    check_weights_file(path, how_to_make)
    try:
        model.load_weights(path)
    except Exception as error:            # missing, truncated, wrong architecture
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        # A wrong architecture: Keras says "... for object <Conv2D ...>:" and the reason on the next line.
        reason = lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]
        reason = reason.split(" Target variable:")[0]          # not the dump of the variable's values
        sys.exit(f"error: cannot load weights from {path} ({reason}); {how_to_make}")
    if not finite(model.get_weights()):
        sys.exit(f"error: cannot load weights from {path} (they hold numbers that are not finite: NaN or inf, "
                 f"as after a run that diverged); {how_to_make}")


def save_graph(path, x, scores, xlabel, title, window=100):
    """The scores (dots) and their running mean over the last `window` (line), as a PNG written atomically.
    matplotlib's Agg backend draws without a window."""
    import numpy as np
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
    `max_frames`; each frame gets a palette of its own colours. A GIF that cannot be written (a full disk) is one
    line and exit 1, never a traceback."""
    import numpy as np
    from PIL import Image                               # Pillow comes with matplotlib
    step = max(1, -(-len(frames) // max_frames))
    images = []
    for frame in frames[::step]:
        image = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame, dtype=np.uint8))
        images.append(image.convert("RGB").quantize(colors=64))
    duration = max(20, round(1000 * seconds_per_frame * step))    # milliseconds per frame
    path = Path(path)                                   # a GIF is a final save: one line and exit 1 if it fails
    try_save(path.name, path.parent, final=True, write=lambda: atomic_write(path, lambda tmp: images[0].save(
        tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0, optimize=True)))
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
    import numpy as np
    frame = frame[:frame.shape[0] // 2 * 2, :frame.shape[1] // 2 * 2].astype(np.uint16)
    return ((frame[0::2, 0::2] + frame[1::2, 0::2] + frame[0::2, 1::2] + frame[1::2, 1::2]) // 4).astype(np.uint8)


# ---- stopping: Ctrl-C and kill raise a flag, never an exception ----
# Ctrl-C (SIGINT), `kill` (SIGTERM) and a closed terminal (SIGHUP: a closed window, a dropped SSH session).
# All three end a run the same way, exit status 130: "stopped by a signal, saved"; a shell would report 129 or 143
# for the last two, but one code is easier to rely on. Windows has no SIGHUP.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class _StartUp:
    requested = False

    def request(self, signum, frame):
        self.requested = True


_START_UP = _StartUp()


class _QuietWhenClosed:
    """sys.stdout or sys.stderr of a script. Once its terminal is closed (the window, the SSH session: EIO) or the
    reader of its pipe has gone (`| head`: EPIPE), every write would raise and end the run before it saves; then
    the stream goes quiet instead (its file descriptor is pointed at the null device) and the run goes on to save
    and end as it should. Not an io.TextIOBase, so that every attribute (encoding, ...) is the real stream's."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError:
            self._go_quiet()
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except OSError:
            self._go_quiet()

    def _go_quiet(self):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
            self._stream.flush()                 # what was buffered goes to the null device
        except (OSError, ValueError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def catch_signals_at_start(module_name):
    """The first thing a script does, before TensorFlow loads (seconds): when it runs as a script (module_name is
    "__main__"), a stop signal during start-up is kept for the StopFlag that main() makes, so the run ends in one
    line, exit 130, instead of a traceback or a silent kill; and its output goes quiet, instead of failing, once
    the terminal is closed (_QuietWhenClosed)."""
    if module_name == "__main__":
        for signum in STOP_SIGNALS:
            signal.signal(signum, _START_UP.request)
        if not isinstance(sys.stdout, _QuietWhenClosed):
            sys.stdout, sys.stderr = _QuietWhenClosed(sys.stdout), _QuietWhenClosed(sys.stderr)


class StopFlag:
    """Ctrl-C, `kill` and a closed terminal (STOP_SIGNALS) only raise this flag; every loop looks at it between
    steps, then stops, and the run saves once and exits 130. A second signal while saving changes nothing (the save
    goes on). No KeyboardInterrupt is ever raised: one raised inside a TensorFlow call or a garbage-collection
    callback can be lost (training goes on) or crash the process. A signal during start-up counts
    (catch_signals_at_start). check_finite() raises the flag too, for a run whose numbers stopped being finite."""

    def __init__(self):
        self.requested = _START_UP.requested
        self.diverged = None                # what stopped being finite, once something did
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.request)

    def request(self, signum, frame):
        self.requested = True

    def check_finite(self, value, what="the loss"):
        """Stop the run (as a signal would) when `value` is NaN or infinite: training diverged, and the run must
        keep its last finite checkpoint instead of saving over it. Returns value."""
        if not math.isfinite(value) and self.diverged is None:
            self.requested, self.diverged = True, what
        return value


class _Never:
    """A stop flag that never stops (tests, benchmarks)."""
    requested, diverged = False, None

    def check_finite(self, value, what="the loss"):
        return value


NEVER = _Never()


def finish(stop, where=None):
    """The last line of a run that saved: exit 1 after a divergence (said in one line, naming `where` the last
    finite checkpoint is, or that there is none, when given; nothing non-finite was saved), 130 after a stop signal
    (also one that came during the final save), else return."""
    if getattr(stop, "diverged", None) is not None:
        kept = "the last finite checkpoint is kept"
        if where is not None:
            kept = f"{kept} ({where})" if Path(where).exists() else "nothing was saved"
        sys.exit(f"error: training diverged ({stop.diverged} is not a finite number): stopped; {kept} "
                 "(try a smaller learning rate)")
    if stop.requested:
        sys.exit(130)


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
    import numpy as np
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
    import numpy as np
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


def save_folder(text):
    """--save-dir DIR: a folder name, not empty (that would be the current folder, unasked); a path that loops
    through symbolic links is refused here, before anything is made."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, got an empty string")
    path = Path(text)
    try:
        path.resolve(strict=False)
        looping = path.is_symlink() and not path.exists()
        for parent in path.absolute().parents:
            looping = looping or (parent.is_symlink() and not parent.exists())
    except (OSError, RuntimeError) as error:          # RuntimeError: Python 3.11's "Symlink loop from ..."
        raise argparse.ArgumentTypeError(f"cannot be used: {error}") from None
    if looping:
        raise argparse.ArgumentTypeError(f"{text!r} is a symbolic link that leads nowhere (or in a loop)")
    return path


def memory_available():
    """Bytes of memory this machine can give a run now (Linux: MemAvailable), or None where it cannot be told."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(parser, option, needed_bytes, what):
    """A size that asks for more memory than this machine has is a command-line error (exit 2), before anything
    is made, that says how much it would need."""
    available = memory_available()
    if available is not None and needed_bytes > available:
        parser.error(f"argument {option}: {what} would need {needed_bytes / 2 ** 30:,.1f} GiB of memory; this "
                     f"machine has {available / 2 ** 30:,.1f} GiB free")


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
