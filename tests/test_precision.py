"""--precision of the two Atari chapters: which precision a machine gets and why, weights that load across
precisions, and the shipped agents choosing the same actions in bfloat16 as in float32."""
import h5py
import numpy as np
import pytest
from conftest import load_module, run_script

DQN_SCRIPTS = ("3-atari/1-breakout-dqn/breakout_dqn.py", "3-atari/1-breakout-dqn/play_dqn_model.py")
A3C_SCRIPTS = ("3-atari/2-breakout-a3c/breakout_a3c.py", "3-atari/2-breakout-a3c/play_a3c_model.py")


@pytest.fixture(scope="module")
def dqn():
    return load_module(DQN_SCRIPTS[0])


@pytest.fixture(scope="module")
def a3c():
    return load_module(A3C_SCRIPTS[0])


# Each folder's plumbing.py holds the precision helpers (cpu_flags, bfloat16_hardware, choose_precision, load_weights);
# the folders' copies are the same bytes (tests/test_plumbing.py), and both are asked here all the same.
@pytest.fixture(scope="module")
def dqn_plumbing():
    return load_module("3-atari/1-breakout-dqn/plumbing.py")


@pytest.fixture(scope="module")
def a3c_plumbing():
    return load_module("3-atari/2-breakout-a3c/plumbing.py")


AMX = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
AVX512_BF16_ONLY = {"avx512f", "avx512_bf16"}
LAPTOP = {"avx2", "fma"}


@pytest.mark.parametrize("flags, gpus, dqn_auto, a3c_auto, reason", [
    (AMX, [], "bfloat16", "float32", "AMX"),
    (AVX512_BF16_ONLY, [], "float32", "float32", "no AMX"),
    (LAPTOP, [], "float32", "float32", "emulated"),
    (set(), [], "float32", "float32", "emulated"),                  # /proc/cpuinfo unreadable (macOS, Windows)
    (LAPTOP, [("NVIDIA H100 80GB HBM3", (9, 0))], "bfloat16", "float32", "compute capability 9.0"),
    (LAPTOP, [("NVIDIA A100-SXM4-40GB", (8, 0))], "bfloat16", "float32", "tensor cores"),
    (AMX, [("Tesla T4", (7, 5))], "float32", "float32", "Tesla T4"),   # the networks run on the GPU, not the CPU
    (LAPTOP, [("some GPU", None)], "float32", "float32", "no bfloat16 tensor cores"),
])
def test_auto_picks_bfloat16_only_where_the_hardware_makes_it_faster(dqn_plumbing, a3c_plumbing, a3c, flags, gpus,
                                                                    dqn_auto, a3c_auto, reason):
    hardware = dqn_plumbing.bfloat16_hardware(flags, gpus)
    assert hardware == a3c_plumbing.bfloat16_hardware(flags, gpus)
    precision, why = dqn_plumbing.choose_precision("auto", hardware)          # the DQN chapter: auto_bfloat16 True
    assert precision == dqn_auto and reason in why and why.startswith("auto: ")
    precision, why = a3c_plumbing.choose_precision("auto", hardware, a3c.AUTO_BFLOAT16)
    assert precision == a3c_auto and why.startswith("auto: ")
    for asked in ("float32", "bfloat16"):                           # asking for one always gets it
        assert dqn_plumbing.choose_precision(asked, hardware)[0] == asked
        assert a3c_plumbing.choose_precision(asked, hardware, a3c.AUTO_BFLOAT16)[0] == asked


def test_cpu_flags_are_read_from_this_machine(dqn_plumbing):
    flags = dqn_plumbing.cpu_flags()
    assert isinstance(flags, set)
    try:
        text = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        assert flags == set()
        return
    # Each flag is a whole word of the first "flags" line (a stray letter or a word cut in two is not), and all of
    # that line's words are there.
    line = next((line for line in text.splitlines() if line.startswith("flags")), None)
    expected = set(line.split(":", 1)[1].split()) if line else set()
    assert flags == expected
    assert not expected or {"fpu", "sse2"} & flags or "neon" in text


@pytest.mark.parametrize("script", DQN_SCRIPTS + A3C_SCRIPTS)
def test_every_atari_script_offers_precision(script, capsys):
    parse_args = load_module(script).parse_args
    with pytest.raises(SystemExit) as shown:
        parse_args(["--help"])
    assert shown.value.code == 0 and "--precision {auto,float32,bfloat16}" in capsys.readouterr().out
    assert parse_args([]).precision == "auto" and parse_args(["--precision", "bfloat16"]).precision == "bfloat16"
    with pytest.raises(SystemExit) as refused:
        parse_args(["--precision", "float16"])
    assert refused.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_a_run_names_its_precision_and_why_first():
    result = run_script(DQN_SCRIPTS[1], "--episodes", 1, "--max-episode-steps", 30, "--no-render", "--seed", 0,
                        "--precision", "bfloat16", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    first = result.stdout.splitlines()[0]
    assert first.startswith("precision: bfloat16 (asked for; ") and first.endswith(")")


def weight_dtypes(path):
    dtypes = set()
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: dtypes.add(str(item.dtype)) if isinstance(item, h5py.Dataset) else None)
    return dtypes


def test_dqn_weights_are_float32_and_load_across_precisions(dqn, dqn_plumbing, tmp_path):
    states = np.random.default_rng(0).integers(0, 256, (8, 4, 84, 84), dtype=np.uint8)
    bf16 = dqn.DQNAgent(memory_size=1, precision="bfloat16")
    assert bf16.model.layers[0].compute_dtype == "bfloat16" and bf16.model.layers[-1].compute_dtype == "float32"
    path = tmp_path / "bf16.weights.h5"
    load_module("3-atari/1-breakout-dqn/dqn_checkpoint.py").save_weights(bf16.model, path, 5, 0.5, 1, [[1, 5, 0.0]])
    assert weight_dtypes(path) == {"float64", "float32"}           # the curve is float64; every weight float32
    f32 = dqn.DQNAgent(memory_size=1, precision="float32")
    dqn_plumbing.load_weights(f32.model, path, "")
    for a, b in zip(bf16.model.get_weights(), f32.model.get_weights()):
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
    q16 = bf16.model(dqn.to_network_input(states)).numpy()
    q32 = f32.model(dqn.to_network_input(states)).numpy()
    assert q16.dtype == np.float32 and np.allclose(q16, q32, atol=0.05)
    # and back: the shipped float32 file plays in bfloat16
    dqn_plumbing.load_weights(bf16.model, dqn.TRAINED, "")


def test_a3c_weights_are_float32_and_load_across_precisions(a3c, tmp_path):
    bf16, f32 = a3c.build_model("bfloat16"), a3c.build_model("float32")
    bf16.load_weights(a3c.TRAINED)
    path = tmp_path / "bf16.weights.h5"
    save_weights = load_module("3-atari/2-breakout-a3c/a3c_checkpoint.py").save_weights
    save_weights(bf16, path, preprocessing="ale-vector", total_steps=1, episode=1, seconds=1.0)
    assert weight_dtypes(path) <= {"float32"}
    f32.load_weights(path)
    states = np.random.default_rng(0).integers(0, 256, (8, *a3c.STATE_SIZE), dtype=np.uint8)
    p16, v16 = bf16(states, training=False)
    p32, v32 = f32(states, training=False)
    assert p16.dtype == "float32" and np.allclose(p16, p32, atol=0.05) and np.allclose(v16, v32, atol=0.1)


# benchmarks/precision_agreement.py, 2000 recorded states: the shipped DQN agrees on 99.75 % with oneDNN's native
# AVX-512 BF16 kernels and 99.80 % with TensorFlow's emulated bfloat16 (TF_ENABLE_ONEDNN_OPTS=0), the A3C agent on
# 99.70 % both ways; where they differ, the two best float32 choices were within 0.0007 (Q) and 0.011 (probability).
AGREEMENT = 0.97
CLOSE_CALL = 0.02


@pytest.fixture(scope="module")
def recorded():
    """The benchmark's recording of states the float32 agents meet while playing (benchmarks/precision_agreement.py)."""
    return load_module("benchmarks/precision_agreement.py")


def assert_same_choices(outputs32, outputs16):
    differ = outputs32.argmax(axis=1) != outputs16.argmax(axis=1)
    assert 1 - differ.mean() >= AGREEMENT
    best_two = np.sort(outputs32, axis=1)[:, -2:]
    assert np.all(best_two[differ, 1] - best_two[differ, 0] < CLOSE_CALL), "bfloat16 changed a clear choice"


def test_the_shipped_dqn_agent_acts_the_same_in_bfloat16(dqn, recorded):
    f32 = dqn.DQNAgent(memory_size=1, precision="float32")
    bf16 = dqn.DQNAgent(memory_size=1, precision="bfloat16")
    for agent in (f32, bf16):
        agent.model.load_weights(dqn.TRAINED)
    f32.epsilon = 0.0
    states = dqn.to_network_input(recorded.dqn_states(f32, 600, np.random.default_rng(0)))
    assert_same_choices(f32.model(states).numpy(), bf16.model(states).numpy())


def test_the_shipped_a3c_agent_acts_the_same_in_bfloat16(a3c, recorded):
    f32, bf16 = a3c.build_model("float32"), a3c.build_model("bfloat16")
    for model in (f32, bf16):
        model.load_weights(a3c.TRAINED)
    states = recorded.a3c_states(f32, 600, np.random.default_rng(0))
    assert_same_choices(f32(states, training=False)[0].numpy(), bf16(states, training=False)[0].numpy())


def test_the_layer_benchmark_switches_exactly_the_layers_it_names(dqn):
    """benchmarks/precision_layers.py times patterns such as "bbbf" by switching layers of the chapter's bfloat16
    agent back to float32; a Keras that ignored the switch would make its table meaningless."""
    layers_benchmark = load_module("benchmarks/precision_layers.py")
    states = np.random.default_rng(0).random((4, 84, 84, 4)).astype(np.float32)
    float32 = dqn.DQNAgent(memory_size=10, precision="float32")
    for pattern in ("ffff", "bbbb", "fbbf", "bbbf"):
        agent = layers_benchmark.agent_with(dqn, pattern)
        for model in (agent.model, agent.target_model):
            conv1, conv2, conv3, flatten, dense, head = (layer.compute_dtype for layer in model.layers)
            expected = ["bfloat16" if mark == "b" else "float32" for mark in pattern]
            assert [conv1, conv2, conv3, dense] == expected and flatten == conv3 and head == "float32"
            assert {weight.dtype for weight in model.weights} == {"float32"}
        agent.model.set_weights(float32.model.get_weights())
        gap = np.abs(np.asarray(agent.model(states)) - np.asarray(float32.model(states))).max()
        assert (gap == 0.0) if pattern == "ffff" else (0.0 < gap < 0.05)
