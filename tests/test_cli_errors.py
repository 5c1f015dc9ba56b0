"""Bad input at the command line: one clear line, a non-zero exit, never a traceback.

Representative mistakes go through ``analogtrain.cli.main`` in-process; property tests
(hypothesis) feed generated config dicts, config files, ``--set`` values and malformed MNIST
IDX files to the same code paths and accept only a valid result or the matching
:class:`~analogtrain.errors.UserError` subclass.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analogtrain import cli
from analogtrain.cli import main
from analogtrain.config import ExperimentConfig
from analogtrain.data.mnist import parse_idx_images, parse_idx_labels, read_gzip
from analogtrain.errors import ConfigError, DataError, UserError
from analogtrain.presets import PRESET_NAMES, preset_dict
from analogtrain.training import Trainer

SMALL = ["--hidden", "8", "--epochs", "1", "--limit-train", "120", "--limit-test", "40", "--quiet"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FILES = {
    "bad.toml": b"[training\nepochs = 3",
    "list.json": b"[1, 2, 3]",
    "unknown.toml": b"[training]\nepohcs = 3\n",
    "deep.json": b"[" * 100_000 + b"]" * 100_000,
    "huge.json": b'{"chip": {"pcm": {"g_max_us": 1' + b"0" * 500 + b"}}}",
    "enormous.json": b'{"training": {"epochs": 1' + b"0" * 5000 + b"}}",
    "latin1.toml": "[training]\nactivation = 'sigmo\u00efd'\n".encode("latin-1"),
    "types.toml": b"[training]\nhidden = 'big'\n",
    "date.toml": b"[training]\nseed = 1979-05-27\n",
    "nan.json": b'{"chip": {"cell": {"gain_f": NaN}}}',
}


@pytest.mark.parametrize("argv, needle", [
    (["train", "--epochs", "-1"], "--epochs (training.epochs) must be a positive integer, got -1"),
    (["train", "--chips", "0"], "--chips"),
    (["train", "--checkpoint-every", "0"], "--checkpoint-every must be a positive integer"),
    (["train", "--seed", "-3"], "--seed"),
    (["train", "--threads", "0"], "--threads"),
    (["train", "--limit-train", "0"], "--limit-train"),
    (["train", "--learning-rate", "nan"], "--learning-rate"),
    (["train", "--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--compare", "hardware"], "invalid choice: 'hardware'"),
    (["trian"], "invalid choice: 'trian'"),
    (["train", "--hidden", "32-x"], "--hidden must be sizes"),
    (["train", "--hidden", "0"], "training.hidden must be >= 1"),
    (["train", "--set", "nonsense"], "--set expects KEY=VALUE"),
    (["train", "--set", "chip.cell.gain_f=abc"], "chip.cell.gain_f must be a number, got 'abc'"),
    (["train", "--set", "training.epochs=1.5"], "training.epochs must be an integer"),
    (["train", "--set", "chip.pcm.g_max_us=" + "9" * 400], "chip.pcm.g_max_us must be a finite number"),
    (["train", "--set", "training.chips=" + "9" * 5000], "training.chips must be an integer"),
    (["train", "--set", "chip=3"], "chip must be a table"),
    (["train", "--set", "trainig.epochs=3"], "did you mean 'training'"),
    (["train", "--set", "training.activation=relu6"], "did you mean 'relu'"),
    (["train", "--device", "nonsense"], "--device 'nonsense' is not a torch device"),
    (["train", "--config", "{tmp}/bad.toml"], "is not valid toml"),
    (["train", "--config", "{tmp}/list.json"], "must hold a table"),
    (["train", "--config", "{tmp}/unknown.toml"], "did you mean 'epochs'"),
    (["train", "--config", "{tmp}/deep.json"], "nested too deeply"),
    (["train", "--config", "{tmp}/huge.json"], "chip.pcm.g_max_us must be a finite number"),
    (["train", "--config", "{tmp}/enormous.json"], "is not valid json"),
    (["train", "--config", "{tmp}/latin1.toml"], "is not valid toml"),
    (["train", "--config", "{tmp}/types.toml"], "training.hidden must be a list"),
    (["train", "--config", "{tmp}/date.toml"], "training.seed must be an integer"),
    (["train", "--config", "{tmp}/nan.json"], "chip.cell.gain_f must be a finite number"),
    (["train", "--config", "{tmp}"], "not found"),
    (["train", "--out", "{tmp}/bad.toml/sub"], "cannot write to output directory"),
    (["train", "--resume", "{tmp}/nowhere"], "nothing to resume"),
    (["train", "--resume", "{tmp}"], "nothing to resume in"),
    (["train", "--resume", "{tmp}", "--epochs", "3"], "drop --epochs"),
    (["cost", "--network", "528-x-10"], "528-x-10"),
])
def test_bad_input_is_one_clear_line(argv, needle, capsys, tmp_path, one_error_line):
    for name, content in FILES.items():
        (tmp_path / name).write_bytes(content)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "train" and "--out" not in argv and "--resume" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    code = main(argv)
    assert code != 0
    line = one_error_line()
    assert needle in line, line
    assert len(line) < 600


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_one_line(capsys, tmp_path, one_error_line):
    assert main(["train", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "no CUDA GPU" in one_error_line()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("edit, needle, code", [
    (lambda rec: "{not json", "is corrupt or was edited", 4),
    (lambda rec: dict(rec, version=7), "has version 7", 4),
    (lambda rec: dict(rec, format="x"), "is not an analogtrain run record", 4),
    (lambda rec: dict(rec, args=dict(rec["args"], limit_train="many")), "args.limit_train", 4),
    (lambda rec: dict(rec, finished={"nature2018": {}}), "finished run 'nature2018'", 4),
    (lambda rec: dict(rec, plan=[{"name": "nature2018", "config": {"training": {"epochs": 0}}}]),
     "holds an invalid config: training.epochs must be >= 1", 4),
])
def test_damaged_run_folder_is_one_clear_line(edit, needle, code, finished_run, tmp_path, capsys, one_error_line):
    out = tmp_path / "run"
    out.mkdir()
    for f in finished_run.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    rec = edit(json.loads((out / "resume.json").read_text()))
    (out / "resume.json").write_text(rec if isinstance(rec, str) else json.dumps(rec))
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--quiet"]) == code
    assert needle in one_error_line()


def test_resume_of_a_finished_run_rewrites_the_same_results(finished_run, capsys):
    before = json.loads((finished_run / "results.json").read_text())
    assert main(["train", "--resume", str(finished_run), "--quiet"]) == 0
    after = json.loads((finished_run / "results.json").read_text())
    assert after["experiments"] == before["experiments"] and after["summary"] == before["summary"]


def test_full_disk_is_one_line(capsys, tmp_path, monkeypatch, one_error_line):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert main(["train", *SMALL, "--out", str(tmp_path / "out")]) == 6
    assert "No space left on device" in one_error_line()


def test_divergence_is_one_line_naming_the_saved_state(capsys, tmp_path, monkeypatch, one_error_line):
    orig = Trainer._after_example

    def poisoned(self):
        orig(self)
        if self.state.examples_seen == 60:
            self.mlp.layers[0].cells.g_plus[0, 0, 0] = float("inf")

    monkeypatch.setattr(Trainer, "_after_example", poisoned)
    out = tmp_path / "out"
    assert main(["train", *SMALL, "--checkpoint-every", "50", "--out", str(out)]) == 5
    line = one_error_line()
    assert "non-finite device state appeared in layer 1 after 100 examples" in line
    assert str(out / "checkpoint-diverged.safetensors") in line
    assert (out / "checkpoint-diverged.safetensors").exists() and (out / "checkpoint.safetensors").exists()


# -- property tests ----------------------------------------------------------------------------
def _paths(d: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for k, v in d.items():
        out.append((*prefix, k))
        if isinstance(v, dict):
            out += _paths(v, (*prefix, k))
    return out


DEFAULT = ExperimentConfig().to_dict()
PATHS = _paths(DEFAULT)
NAMES = sorted({p[-1] for p in PATHS})
KEYS = st.one_of(st.sampled_from(NAMES), st.text(max_size=10))
LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([0, -1, 1, 2**63, 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(["digital", "2pcm", "relu"]),
)
VALUES = st.recursive(LEAVES, lambda c: st.lists(c, max_size=4) | st.dictionaries(KEYS, c, max_size=4), max_leaves=8)


def _get(d, path: tuple):
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


@st.composite
def config_dicts(draw) -> dict:
    """Random nested dicts, and presets with a few values changed (scaled, replaced, removed,
    or an unknown key added): a mix of valid and invalid configs."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.dictionaries(KEYS, VALUES, max_size=5))
    d = json.loads(json.dumps(preset_dict(draw(st.sampled_from(PRESET_NAMES)))))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = _get(d, path[:-1])
        if not isinstance(parent, dict):
            continue
        how = draw(st.sampled_from(["scale", "scale", "replace", "delete", "unknown"]))
        old = parent.get(path[-1])
        if how == "scale" and isinstance(old, (int, float)) and not isinstance(old, bool):
            new = old * draw(st.floats(-1, 4, allow_nan=False))
            parent[path[-1]] = int(new) if isinstance(old, int) else new
        elif how == "delete":
            parent.pop(path[-1], None)
        elif how == "unknown":
            parent[draw(st.text(min_size=1, max_size=10))] = draw(VALUES)
        else:
            parent[path[-1]] = draw(VALUES)
    return d


def _check_one_line(exc: UserError) -> None:
    text = str(exc)
    assert text and "\n" not in text and len(text) < 600, text


def test_generated_config_dicts_are_valid_or_config_errors():
    counts = {"cases": 0, "valid": 0, "errors": 0}

    @settings(max_examples=200, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(config_dicts())
    def check(d):
        counts["cases"] += 1
        try:
            cfg = ExperimentConfig.from_dict(d)
        except UserError as exc:  # never another exception type
            _check_one_line(exc)
            assert isinstance(exc, ConfigError)
            counts["errors"] += 1
        else:
            counts["valid"] += 1
            assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg

    check()
    print(f"\nconfig dicts: {counts}")
    assert counts["cases"] >= 200 and counts["valid"] > 10 and counts["errors"] > 10


class _Valid(Exception):
    """Raised in place of loading data: the command line accepted the config."""


def test_generated_config_files_and_set_values_through_the_cli(tmp_path, capsys, monkeypatch, one_error_line):
    """The real ``analogtrain train --config FILE --set K=V`` path (main, argument checks,
    file reading, merging, validation) up to loading the data."""

    def stop(args):
        raise _Valid

    monkeypatch.setattr(cli, "_load_data", stop)
    counts = {"cases": 0, "valid": 0, "errors": 0}
    toml_lines = st.lists(st.one_of(
        st.sampled_from(["[training]", "[chip.pcm]", "[chip.cell]", "[chip]", "[[x]]", "", "epochs = 2",
                         "hidden = [8, 4]", "gain_f = 2.5", "kind = 'digital'", "seed = 1979-05-27"]),
        st.tuples(st.sampled_from(NAMES), st.text(max_size=8)).map(lambda t: f"{t[0]} = {t[1]}"),
        st.text(max_size=20),
    ), max_size=6).map("\n".join)
    set_values = st.tuples(st.sampled_from([".".join(p) for p in PATHS] + ["x", "", "training..epochs"]),
                           st.one_of(st.text(max_size=10), st.integers().map(str), st.floats().map(str),
                                     st.sampled_from(["[1, 2]", "true", "'relu'", "{a = 1}", "[[[]]]", "1e999"]))
                           ).map(lambda t: f"{t[0]}={t[1]}")

    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(st.one_of(config_dicts().map(lambda d: ("json", json.dumps(d, default=str))),
                     toml_lines.map(lambda t: ("toml", t))),
           st.lists(set_values, max_size=2))
    def check(file, sets):
        counts["cases"] += 1
        suffix, text = file
        path = tmp_path / f"cfg.{suffix}"
        path.write_text(text, encoding="utf-8", errors="surrogatepass" if suffix == "toml" else "strict")
        argv = ["train", "--config", str(path), "--out", str(tmp_path / "out")]
        for item in sets:
            argv += ["--set", item]
        capsys.readouterr()
        try:
            code = main(argv)
        except _Valid:
            counts["valid"] += 1
            return
        counts["errors"] += 1
        assert code == 2
        one_error_line()

    check()
    print(f"\nconfig files + --set through the CLI: {counts}")
    assert counts["cases"] >= 100 and counts["valid"] > 0 and counts["errors"] > 0


def _idx_images(count: int, rows: int = 28, cols: int = 28, magic: int = 2051, extra: int = 0) -> bytes:
    pixels = bytes((i * 7) % 256 for i in range(max(0, count * rows * cols + extra)))
    return struct.pack(">IIII", magic, count, rows, cols) + pixels


@st.composite
def idx_files(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["random", "images", "labels", "truncated", "gzip", "gzip-truncated"]))
    u32 = st.one_of(st.integers(0, 4), st.integers(0, 2**32 - 1))
    if kind == "random":
        return kind, draw(st.binary(max_size=64))
    if kind == "images":
        magic = draw(st.sampled_from([2051, 2049, 0, 2**32 - 1]))
        count, rows, cols = draw(st.integers(0, 3)), draw(st.sampled_from([28, 27, 0])), draw(st.sampled_from([28, 1]))
        head = struct.pack(">IIII", magic, count if draw(st.booleans()) else draw(u32), rows, cols)
        size = count * rows * cols
        return kind, head + draw(st.binary(min_size=max(0, size - 2), max_size=size + 2))
    if kind == "labels":
        count = draw(st.integers(0, 5))
        head = struct.pack(">II", draw(st.sampled_from([2049, 2051, 7])), count if draw(st.booleans()) else draw(u32))
        return kind, head + draw(st.binary(min_size=max(0, count - 1), max_size=count + 1))
    valid = _idx_images(2)
    cut = draw(st.integers(0, len(valid)))
    if kind == "truncated":
        return kind, valid[:cut]
    blob = gzip.compress(valid if draw(st.booleans()) else draw(st.binary(max_size=64)))
    return kind, blob if kind == "gzip" else blob[: draw(st.integers(0, len(blob)))]


def test_malformed_mnist_idx_files_give_only_data_errors(tmp_path):
    counts: dict[str, int] = {}
    path = tmp_path / "train-images-idx3-ubyte.gz"

    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(idx_files())
    def check(item):
        kind, data = item
        counts[kind] = counts.get(kind, 0) + 1
        if kind.startswith("gzip"):
            path.write_bytes(data)
            try:
                data = read_gzip(path)
            except DataError as exc:
                _check_one_line(exc)
                return
        for parse in (parse_idx_images, parse_idx_labels):
            try:
                out = parse(data, path)
            except DataError as exc:
                _check_one_line(exc)
            else:
                assert out.dtype.name == "uint8"

    check()
    print(f"\nmalformed IDX files: {sum(counts.values())} cases {counts}")
    assert sum(counts.values()) >= 100


@pytest.mark.parametrize("key,meant", [("chip.capacitor.leak_tau", "leak_time_constant_s"),
                                       ("leak_tau", "chip.capacitor.leak_time_constant_s"),
                                       ("training.lr", "learning_rate"),
                                       ("chip.update.pulse_length", "pulse_train_length")])
def test_did_you_mean_finds_the_field_a_user_meant(key, meant, one_error_line):
    from analogtrain import cli

    assert cli.main(["train", "--set", f"{key}=1"]) != 0
    assert f"did you mean {meant!r}" in one_error_line()


def test_the_gap_is_chip_minus_software_and_says_so(tmp_path, capsys):
    from analogtrain import cli

    assert cli.main(["train", "--epochs", "1", "--hidden", "8", "--limit-train", "60", "--limit-test", "30",
                     "--compare", "software", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "chip - software" in out and "negative: the chip is below software" in out
    from analogtrain.runs.results import RunResult

    s = RunResult.read(tmp_path / "r").extra["summary"]
    assert s["gap_points"] == pytest.approx(100 * (s["test_accuracy"] - s["software_test_accuracy"]))
