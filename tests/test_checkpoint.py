"""Checkpoints: a resumed run is bit-identical to an uninterrupted one; bad files are refused.

The subprocess tests run the real command line (``python -m analogtrain.cli``) on the
embedded digits dataset: one is killed with SIGKILL at a random (seeded) point and resumed,
one gets SIGINT and must save, exit 130 and resume; both must end exactly where an
uninterrupted run of the same seed ends (conductances, capacitor voltages, every other
state tensor, accuracies, pulse counts).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analogtrain as at
from analogtrain.cell import HybridCells
from analogtrain.config import merge_overrides
from analogtrain.errors import CheckpointError, OutputError, TrainingDivergedError
from analogtrain.runs import checkpoint as ckmod
from analogtrain.runs.checkpoint import read_checkpoint, split_state
from analogtrain.runs.results import RunResult
from analogtrain.training import Trainer

# Buffers created with torch.empty and always written before they are read: their contents
# may differ between processes (uninitialised memory) without any effect on the run.
SCRATCH = ()  # a state dict holds no scratch buffers
STATE = (".g_plus_us", ".g_minus_us", ".v_c_v", ".v_shared_v", ".polarity", ".w", ".row_clock_s", ".nu_plus",
         ".set_step_plus")


# -- in-process helpers ------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small networks: one torch thread is fastest, and the only sane choice on a shared box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    return at.load_dataset("digits").subset(400, 100)


def _make(preset: str, data, **over) -> Trainer:
    base = {"training": {"hidden": [16, 8], "epochs": 2, "learning_rate": 0.5},
            "chip": {"transfer": {"interval_examples": 150}}}
    cfg = at.get_preset(preset, merge_overrides(base, over))
    return Trainer(cfg, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes)


def _strip(tree):
    """The saved tree without wall-clock times (the only thing allowed to differ)."""
    if isinstance(tree, dict):
        return {k: _strip(v) for k, v in tree.items() if k != "wall_s"}
    if isinstance(tree, list):
        return [_strip(v) for v in tree]
    return tree


def _assert_same_state(tree_a, tensors_a, tree_b, tensors_b) -> None:
    assert tensors_a.keys() == tensors_b.keys()
    differ = [k for k in tensors_a if not torch.equal(tensors_a[k], tensors_b[k])]
    assert all(k.endswith(SCRATCH) for k in differ), differ
    checked = [k for k in tensors_a if k.endswith(STATE)]
    assert checked, "no device state found"
    assert _strip(tree_a) == _strip(tree_b)


def _assert_same_results(ra, rb) -> None:
    keys = ("transfers", "examples", "update_pulses", "saturated_updates", "transfer_tuning_pulses",
            "transfer_unconverged_devices", "occasional_reset_pulses", "pulse_statistics", "final_test_accuracy",
            "initial_programming_pulses")
    for k in keys:
        assert getattr(ra, k) == getattr(rb, k), k
    strip = [{k: v for k, v in h.to_dict().items() if k != "wall_s"} for h in ra.history]
    assert strip == [{k: v for k, v in h.to_dict().items() if k != "wall_s"} for h in rb.history]


@pytest.mark.parametrize("preset, over, stop_at", [
    ("nature2018", {}, 333),
    ("nature2018", {"training": {"chips": 2}, "chip": {"transfer": {"mode": "column"},
                                                       "pcm": {"drift_nu": 0.05, "drift_nu_sigma": 0.01,
                                                               "drift_refresh_examples": 40}}}, 401),
    ("2pcm", {"chip": {"pcm": {"reset_check_interval_examples": 100}}}, 250),
    ("software", {}, 123),
])
def test_stop_save_load_continue_is_bit_identical(preset, over, stop_at, digits, tmp_path):
    ref = _make(preset, digits, **over)
    r_ref = ref.train(progress=False)
    a = _make(preset, digits, **over)
    a.train(progress=False, on_step=lambda t: t.state.examples_seen == stop_at,
            checkpoint_every=97, checkpoint_path=tmp_path / "c.safetensors")
    assert a.state.examples_seen == stop_at
    a.save_checkpoint(tmp_path / "stop.safetensors")
    b = Trainer.from_checkpoint(tmp_path / "stop.safetensors", digits.x_train, digits.y_train, digits.x_test,
                                digits.y_test, digits.n_classes)
    r_b = b.train(progress=False)
    _assert_same_results(r_ref, r_b)
    _assert_same_state(*split_state(ref.state_dict()), *split_state(b.state_dict()))
    # and from the last periodic checkpoint (a multiple of 97 examples), into an existing trainer
    c = _make(preset, digits, **over)
    c.load_checkpoint(tmp_path / "c.safetensors")
    assert c.state.examples_seen == max(97 * (stop_at // 97), digits.n_train * (stop_at // digits.n_train))
    _assert_same_results(r_ref, c.train(progress=False))
    _assert_same_state(*split_state(ref.state_dict()), *split_state(c.state_dict()))


@pytest.mark.parametrize("preset", ["nature2018", "nature2018-no-inversion", "2pcm", "software"])
def test_a_checkpoint_is_the_trainers_named_state(preset, digits):
    values, tensors = split_state(_make(preset, digits).state_dict())
    assert "mlp.generator" in tensors and values["version"] == Trainer.STATE_VERSION
    names = set(tensors)
    if preset != "software":
        assert {"mlp.layers.0.cells.g_plus_us", "mlp.layers.0.cells.version"} <= names
    assert not any("._" in n or n.split(".")[-1].startswith("_") for n in names)  # no private attributes


def test_renaming_a_private_attribute_does_not_change_a_checkpoint(monkeypatch, digits, tmp_path):
    """Checkpoints are built from state dicts: a private cache the cells keep under another name
    is neither saved nor needed, and the saved run resumes as before."""
    a = _make("nature2018", digits)
    a.train(epochs=1, progress=False, on_step=lambda t: t.state.examples_seen == 30)
    a.save_checkpoint(tmp_path / "a.safetensors")
    orig = HybridCells.__init__

    def init(self, *args, **kw):
        orig(self, *args, **kw)
        self._some_new_cache = torch.zeros(3)

    monkeypatch.setattr(HybridCells, "__init__", init)
    b = Trainer.from_checkpoint(tmp_path / "a.safetensors", digits.x_train, digits.y_train, digits.x_test,
                                digits.y_test, digits.n_classes)
    assert b.state.examples_seen == 30
    assert split_state(b.state_dict())[1].keys() == split_state(a.state_dict())[1].keys()


def test_a_state_from_another_version_is_refused_in_one_line(digits, tmp_path):
    a = _make("nature2018", digits)
    sd = a.state_dict()
    sd["version"] = 1
    with pytest.raises(CheckpointError, match="state version 1") as err:
        _make("nature2018", digits).load_state_dict(sd)
    assert "\n" not in str(err.value)
    sd = a.state_dict()
    sd["mlp.layers.0.cells.version"] = torch.tensor(9)
    with pytest.raises(CheckpointError, match="version 9"):
        _make("nature2018", digits).load_state_dict(sd)


def test_checkpoint_for_another_config_or_data_is_refused(digits, tmp_path):
    a = _make("nature2018", digits)
    a.save_checkpoint(tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="another config .*training.seed"):
        _make("nature2018", digits, training={"seed": 1}).load_checkpoint(tmp_path / "a.safetensors")
    other = digits.subset(300, 100)
    b = Trainer(a.config, other.x_train, other.y_train, other.x_test, other.y_test, 10)
    with pytest.raises(CheckpointError, match="other data"):
        b.load_checkpoint(tmp_path / "a.safetensors")
    c = _make("nature2018", digits)
    c.mlp.layers[0].cells.v = torch.zeros(1, 2, 3)  # a shape this checkpoint cannot fill
    with pytest.raises(CheckpointError, match=r"cells\.v_c_v is not a torch.float32 tensor of shape \(1, 2, 3\)"):
        c.load_checkpoint(tmp_path / "a.safetensors")


# -- divergence and write failures ---------------------------------------------------------
def test_divergence_saves_the_state_and_says_where(digits, tmp_path):
    tr = _make("nature2018", digits)

    def poison(t: Trainer) -> bool:
        if t.state.examples_seen == 150:
            t.mlp.layers[1].cells.v[0, 3, 2] = float("nan")
        return False

    path = tmp_path / "checkpoint.safetensors"
    with pytest.raises(TrainingDivergedError) as info:
        tr.train(progress=False, on_step=poison, checkpoint_every=97, checkpoint_path=path)
    msg = str(info.value)
    bad = tmp_path / "checkpoint-diverged.safetensors"
    assert "\n" not in msg and str(bad) in msg and "layer 2" in msg
    assert read_checkpoint(bad).progress["examples_seen"] == 194  # caught at the next checkpoint
    assert read_checkpoint(path).progress["examples_seen"] == 97  # the last good one is kept


def test_non_finite_evaluation_output_is_caught(digits):
    tr = _make("software", digits, training={"epochs": 1})

    def blow_up(t: Trainer) -> bool:
        if t.state.examples_seen == digits.n_train:
            for layer in t.mlp.layers:
                layer.w.fill_(3e38)  # finite weights, infinite outputs
        return False

    with pytest.raises(TrainingDivergedError, match="non-finite network outputs in evaluation"):
        tr.train(progress=False, on_step=blow_up)


def test_full_disk_is_an_output_error_and_keeps_the_old_checkpoint(digits, tmp_path, monkeypatch):
    tr = _make("nature2018", digits)
    path = tmp_path / "checkpoint.safetensors"
    tr.save_checkpoint(path)
    before = path.read_bytes()
    tr.train(epochs=1, progress=False, on_step=lambda t: t.state.examples_seen == 20)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match="No space left on device") as info:
        tr.save_checkpoint(path)
    assert "\n" not in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.safetensors"]  # no temporary file left


# -- files that are not checkpoints ----------------------------------------------------------
@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, digits) -> bytes:
    tr = _make("nature2018", digits, training={"hidden": [4]})
    tr.train(epochs=1, progress=False, on_step=lambda t: t.state.examples_seen == 40)
    path = tmp_path_factory.mktemp("ck") / "small.safetensors"
    tr.save_checkpoint(path)
    return path.read_bytes()


def _header(data: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def _with_header(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + body


class _Touch:
    """Unpickling this creates a marker file (what a malicious pickle would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _load_all_ways(path: Path, data, checksum_ok: bool = False) -> None:
    if not checksum_ok:
        with pytest.raises(CheckpointError):
            read_checkpoint(path)
    with pytest.raises(CheckpointError):
        Trainer.from_checkpoint(path, data.x_train, data.y_train, data.x_test, data.y_test, data.n_classes)


def test_pickle_and_torch_save_files_do_not_execute(tmp_path, digits, capsys):
    marker = tmp_path / "pwned"
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Touch(probe)))
    assert probe.exists(), "the payload is live: unpickling it creates a file"
    path = tmp_path / "checkpoint.safetensors"
    for blob in (pickle.dumps({"state": _Touch(marker)}), None):
        if blob is None:
            torch.save({"state": _Touch(marker)}, path)  # torch's zip+pickle format
        else:
            path.write_bytes(blob)
        _load_all_ways(path, digits)
        assert not marker.exists()
    # and through the command line: a run folder whose checkpoint is the malicious file
    from analogtrain.cli import main

    out = tmp_path / "run"
    code = main(["train", "--hidden", "4", "--epochs", "1", "--limit-train", "60", "--limit-test", "20",
                 "--quiet", "--out", str(out), "--checkpoint-every", "25"])
    assert code == 0
    torch.save({"state": _Touch(marker)}, out / "checkpoint.safetensors")
    rec = json.loads((out / "resume.json").read_text())
    rec["finished"] = {}
    (out / "resume.json").write_text(json.dumps(rec))
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--quiet"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("analogtrain: error: checkpoint"), err
    assert not marker.exists()


def test_crafted_json_metadata_does_not_execute(tmp_path, digits, small_checkpoint):
    """A file with a valid checksum whose JSON names functions and classes to build: nothing
    is ever looked up by name, so it is refused."""
    marker = tmp_path / "pwned"
    tensors = safetensors.torch.load(small_checkpoint)
    header, _ = _header(small_checkpoint)
    state = json.loads(header["__metadata__"]["state"])
    attacks = [
        {"obj": "pathlib:Path.touch", "attrs": {"self": {"v": str(marker)}}},
        {"obj": "builtins:eval", "attrs": {}},
        {"py/reduce": [{"py/function": "pathlib.Path.touch"}, {"py/tuple": [str(marker)]}]},
        {"__reduce__": ["os.system", [f"touch {marker}"]]},
    ]
    for i, attack in enumerate(attacks):
        s = json.loads(json.dumps(state))
        s["values"]["training_state"]["history"] = [attack]
        s["values"]["counters"]["evil"] = attack
        for variant in (s, {**s, "values": attack}):
            sj = json.dumps(variant)
            meta = {"format": ckmod.FORMAT, "format_version": str(ckmod.FORMAT_VERSION), "state": sj, "sha256": ckmod._digest(sj, tensors)}
            path = tmp_path / f"crafted{i}.safetensors"
            path.write_bytes(safetensors.torch.save(tensors, metadata=meta))
            _load_all_ways(path, digits, checksum_ok=True)
            assert not marker.exists()


@pytest.mark.parametrize("damage, needle", [
    ("truncate", "truncated"),
    ("truncate_body", "not an analogtrain checkpoint or is corrupt"),
    ("flip_data", "fails its checksum"),
    ("flip_header", "checkpoint"),
    ("version", "format version '3'"),
    ("empty", "truncated"),
    ("missing", "not found"),
    ("directory", "cannot read"),
    ("other_safetensors", "no analogtrain metadata"),
])
def test_damaged_checkpoint_is_one_clear_line(damage, needle, small_checkpoint, tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    data = bytearray(small_checkpoint)
    if damage == "truncate":
        data = data[:5]
    elif damage == "truncate_body":
        data = data[: len(data) - 100]
    elif damage == "flip_data":
        data[-50] ^= 0x10
    elif damage == "flip_header":
        data[200] ^= 0x04
    elif damage == "version":
        header, _ = _header(small_checkpoint)
        meta = dict(header["__metadata__"], format_version="3")
        data = safetensors.torch.save(safetensors.torch.load(small_checkpoint), metadata=meta)
    elif damage == "empty":
        data = b""
    elif damage == "other_safetensors":
        data = safetensors.torch.save({"weight": torch.zeros(3)})
    if damage == "directory":
        path.mkdir()
    elif damage != "missing":
        path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg, msg


def _mutations(base: bytes):
    n = len(base)
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                               lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                               max_leaves=6)
    return st.one_of(
        st.binary(max_size=600).map(lambda b: ("random", b)),
        st.integers(0, n - 1).map(lambda k: ("truncate", base[:k])),
        st.integers(0, 8 * n - 1).map(lambda b: ("flip", base[: b // 8] + bytes([base[b // 8] ^ (1 << (b % 8))])
                                                  + base[b // 8 + 1:])),
        st.tuples(st.integers(0, n - 1), st.binary(min_size=1, max_size=16)).map(
            lambda t: ("overwrite", base[: t[0]] + t[1] + base[t[0] + len(t[1]):])),
        st.integers(0, 2**64 - 1).map(lambda v: ("length", v.to_bytes(8, "little") + base[8:])),
        st.tuples(st.integers(0, 10_000), json_values).map(lambda t: ("header", _mutate_header(base, *t))),
    )


def _mutate_header(base: bytes, pick: int, value) -> bytes:
    header, body = _header(base)
    slots = [(header, k) for k in header]
    for k, v in header.items():
        if isinstance(v, dict):
            slots += [(v, kk) for kk in v]
    target, key = slots[pick % len(slots)]
    target[key] = value
    return _with_header(header, body)


def test_fuzzed_checkpoint_files_give_only_checkpoint_errors(small_checkpoint, tmp_path, digits):
    path = tmp_path / "fuzz.safetensors"
    seen: dict[str, int] = {}

    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_mutations(small_checkpoint))
    def check(mutation):
        kind, data = mutation
        seen[kind] = seen.get(kind, 0) + 1
        path.write_bytes(data)
        if data == small_checkpoint:
            read_checkpoint(path)
            return
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path)
        assert "\n" not in str(info.value)

    check()
    print(f"\nfuzzed checkpoint files: {sum(seen.values())} cases {seen}")
    assert sum(seen.values()) >= 100


def test_tampered_state_with_valid_checksum_gives_only_checkpoint_errors(small_checkpoint, tmp_path, digits):
    """An edited tree (checksum recomputed, as an attacker would) either loads or is a
    CheckpointError; never another exception."""
    tensors = safetensors.torch.load(small_checkpoint)
    header, _ = _header(small_checkpoint)
    state = json.loads(header["__metadata__"]["state"])

    def collect(node, out: list) -> list:
        if isinstance(node, dict):
            for k, v in node.items():
                out.append((node, k))
                collect(v, out)
        elif isinstance(node, list):
            for v in node:
                collect(v, out)
        return out

    nodes = collect(state["values"], [])
    path = tmp_path / "tampered.safetensors"
    counts = {"cases": 0, "loaded": 0}
    values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
                       st.sampled_from([{"t": "__generator__.0"}, {"t": "nope"}, {"gen": 3}, {"ref": "trainer"},
                                        {"list": [{"v": 1}]}, {"dict": [[1, {"v": 2}]]}, {"obj": "x:y", "attrs": {}},
                                        {"skip": "x"}, {"v": [1]}, {}, []]))

    @settings(max_examples=100, deadline=None, derandomize=True, database=None)
    @given(st.integers(0, len(nodes) - 1), values)
    def check(i, value):
        counts["cases"] += 1
        s = json.loads(json.dumps(state))
        nodes_s = collect(s["values"], [])
        parent, key = nodes_s[i % len(nodes_s)]
        parent[key] = value
        sj = json.dumps(s)
        meta = {"format": ckmod.FORMAT, "format_version": str(ckmod.FORMAT_VERSION), "state": sj, "sha256": ckmod._digest(sj, tensors)}
        path.write_bytes(safetensors.torch.save(tensors, metadata=meta))
        try:
            _make("nature2018", digits, training={"hidden": [4]}).load_checkpoint(path)
            counts["loaded"] += 1
        except CheckpointError as exc:
            assert "\n" not in str(exc)

    check()
    print(f"\ntampered checkpoints: {counts}")
    assert counts["cases"] >= 100


# -- the command line, interrupted for real --------------------------------------------------
CLI = [sys.executable, "-m", "analogtrain.cli", "train"]
RUN = ["--hidden", "32-16", "--epochs", "2", "--learning-rate", "0.5", "--limit-train", "800", "--limit-test", "200",
       "--set", "chip.transfer.interval_examples=300", "--checkpoint-every", "97", "--compare", "software",
       "--threads", "1", "--quiet"]
PER_RUN = 2 * 800  # examples of each of the two runs (nature2018, then software)


class _Baseline:
    def __init__(self, out: Path):
        self.out = out
        self.proc = subprocess.Popen([*CLI, *RUN, "--out", str(out)], cwd=out.parent, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)

    def wait(self) -> Path:
        _, err = self.proc.communicate(timeout=180)
        assert self.proc.returncode == 0, err
        return self.out


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> _Baseline:
    """The uninterrupted run, started in the background (it runs beside the interrupted one)."""
    b = _Baseline(tmp_path_factory.mktemp("baseline") / "run")
    yield b
    if b.proc.poll() is None:
        b.proc.kill()
        b.proc.wait()


def _examples_done(out: Path) -> int:
    """Examples done over both runs, from the latest checkpoints (0 before the first)."""
    for name, offset in (("checkpoint-software.safetensors", PER_RUN), ("checkpoint.safetensors", 0)):
        if (out / name).exists():
            return offset + read_checkpoint(out / name).progress["examples_seen"]
    return 0


def _wait_for(out: Path, target: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"the run ended before example {target}: {proc.communicate()[1]}"
        done = _examples_done(out)
        if done >= target:
            return done
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint at example {target} within {timeout} s")


def _resume(out: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([*CLI, "--resume", str(out), "--quiet"], cwd=out.parent, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r


def _assert_same_run(a: Path, b: Path) -> None:
    for name in ("checkpoint.safetensors", "checkpoint-software.safetensors"):
        ca, cb = read_checkpoint(a / name), read_checkpoint(b / name)
        assert ca.progress == cb.progress == {"epoch": 2, "position": 0, "examples_seen": PER_RUN}
        _assert_same_state(ca.state["values"], ca.tensors, cb.state["values"], cb.tensors)
    ra, rb = (RunResult.read(d) for d in (a, b))
    assert ra.variants == rb.variants == ["nature2018", "software"]
    for name in ra.variants:
        _assert_same_results(ra.variant(name), rb.variant(name))
    assert ra.extra["summary"] == rb.extra["summary"]
    assert (b / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("seed", [3, 5])  # fixed seeds: the same random points on every run of the test
def test_sigkill_at_a_random_point_then_resume_is_bit_identical(seed, baseline, tmp_path):
    """Seed 3 kills during the analog run's second epoch, seed 5 during the software run
    (after the analog run's results went into resume.json)."""
    rng = random.Random(seed)
    target = rng.randrange(98, 2 * PER_RUN - 300)
    pause = rng.uniform(0.0, 0.05)
    out = tmp_path / "run"
    proc = subprocess.Popen([*CLI, *RUN, "--out", str(out)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        done = _wait_for(out, target, proc)
        time.sleep(pause)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    at_kill = _examples_done(out)
    print(f"\nkilled at about example {done} of {2 * PER_RUN} (target {target}); last checkpoint at {at_kill}")
    assert 0 < at_kill < 2 * PER_RUN
    r = _resume(out)
    assert "resuming" in r.stdout
    _assert_same_run(baseline.wait(), out)


def test_sigint_saves_exits_130_and_resumes_identically(baseline, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([*CLI, *RUN, "--out", str(out)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(out, 300, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    hint = (f"analogtrain: interrupted; checkpoint saved in {out / 'checkpoint.safetensors'}; "
            f"resume with: analogtrain train --resume {out}")
    assert hint in err.splitlines(), err
    ck = read_checkpoint(out / "checkpoint.safetensors")
    assert 300 <= ck.progress["examples_seen"] < PER_RUN  # saved where it stopped, not at a periodic point
    _resume(out)
    _assert_same_run(baseline.wait(), out)
