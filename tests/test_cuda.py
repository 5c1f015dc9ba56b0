"""What needs a CUDA device: the step without host synchronisation, CPU and CUDA agreeing, the
benchmark script. Run where CUDA is present; skipped, with the reason, where it is not."""

from __future__ import annotations

import pytest
import torch

import analogtrain as at
from analogtrain.network import build_mlp

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("preset", ["nature2018", "2pcm"])
def test_the_training_step_does_not_synchronise_with_the_host(preset):
    cfg = at.get_preset(preset, {"training": {"hidden": [32, 16], "chips": 4}})
    mlp, _ = build_mlp(cfg, 64, 10, "cuda")
    x = torch.rand(64, device="cuda")
    label = torch.tensor(3, device="cuda")
    mlp.train_example(x, label)  # first step: allocations, caches
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            mlp.train_example(x, label)
            mlp.advance_time(3.6e-7)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@needs_cuda
def test_cpu_and_cuda_agree_within_the_chips_spread():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("gpu_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = bench.load(None, 1500, 500)
    res = bench.agreement(data, torch.device("cuda"), chips=4, images=1500)
    assert all(v["agree"] for v in res["verdict"].values()), res


def test_the_gpu_benchmark_runs_on_the_cpu(tmp_path, capsys):
    """The script itself, in a small form, on the CPU (the same code paths but the device)."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("gpu_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "gpu.json"
    assert bench.main(["--device", "cpu", "--chips", "1", "2", "--images", "40", "--warmup", "10", "--compile", "off",
                       "--agree-chips", "2", "--agree-images", "60", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["chips"] for r in res["chips"]] == [1, 2] and res["plain"]["images_per_s"] > 0
    assert all(v["agree"] for v in res["agreement"]["verdict"].values())  # CPU against itself: identical
    assert "chip-images/s" in capsys.readouterr().out
