"""Public specifications of the GPUs the chip is compared with, and the comparison itself.

Peak numbers are the vendors' dense FP16 figures (tensor cores where the GPU has them; no
structured-sparsity doubling), board TDP and die area, each with its source.  A GPU's
GOP/s/W and TOP/s/mm^2 are computed from them *at peak*, which is how the paper's
"two orders of magnitude" is framed; the per-image estimate for training the same network
one example at a time also applies an explicit utilisation
(:attr:`~analogtrain.cost.params.GpuComparisonParams.minibatch1_utilisation`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .params import GpuComparisonParams

__all__ = ["GpuSpec", "GPUS", "GpuComparison", "compare_gpus", "gpu_by_name", "gpu_run_estimate"]


@dataclass(frozen=True)
class GpuSpec:
    """One GPU's public specification."""

    name: str
    year: int
    process: str
    peak_fp16_tflops: float  # dense FP16 (tensor cores where present), no sparsity
    tdp_w: float
    die_area_mm2: float
    source: str

    @property
    def gops_per_w(self) -> float:
        """Peak operations per second per watt, in GOP/s/W."""
        return self.peak_fp16_tflops * 1e3 / self.tdp_w

    @property
    def tops_per_mm2(self) -> float:
        """Peak operations per second per die area, in TOP/s/mm^2."""
        return self.peak_fp16_tflops / self.die_area_mm2


#: The GPUs compared.  Sources: NVIDIA data sheets / architecture white papers.
GPUS: tuple[GpuSpec, ...] = (
    GpuSpec(
        "P100 SXM2", 2016, "TSMC 16 nm", 21.2, 300.0, 610.0,
        "spec: NVIDIA Tesla P100 data sheet (NVLink board: 21.2 TFLOP/s FP16, 300 W) and "
        "Pascal GP100 white paper (610 mm^2)",
    ),
    GpuSpec(
        "P100 PCIe", 2016, "TSMC 16 nm", 18.7, 250.0, 610.0,
        "spec: NVIDIA Tesla P100 data sheet (PCIe board: 18.7 TFLOP/s FP16, 250 W), same die",
    ),
    GpuSpec(
        "V100 SXM2", 2017, "TSMC 12 nm", 125.0, 300.0, 815.0,
        "spec: NVIDIA Tesla V100 data sheet (125 TFLOP/s tensor FP16, 300 W) and Volta "
        "white paper (815 mm^2)",
    ),
    GpuSpec(
        "A100 SXM4", 2020, "TSMC 7 nm", 312.0, 400.0, 826.0,
        "spec: NVIDIA A100 data sheet (312 TFLOP/s dense tensor FP16, 400 W) and Ampere "
        "white paper (826 mm^2)",
    ),
    GpuSpec(
        "H100 SXM5", 2022, "TSMC 4N", 989.4, 700.0, 814.0,
        "spec: NVIDIA H100 data sheet (989 TFLOP/s dense tensor FP16, 1,979 with sparsity; "
        "700 W) and Hopper white paper (814 mm^2)",
    ),
)


def gpu_by_name(name: str) -> GpuSpec:
    """The GPU whose name matches ``name`` (case-insensitive, prefix allowed)."""
    from ..errors import ConfigError

    low = name.lower()
    for gpu in GPUS:
        if gpu.name.lower() == low:
            return gpu
    matches = [g for g in GPUS if g.name.lower().startswith(low)]
    if matches:
        return matches[0]
    raise ConfigError(f"unknown GPU {name!r}; use one of {', '.join(g.name for g in GPUS)}")


@dataclass(frozen=True)
class GpuComparison:
    """The chip against one GPU, per operation and per image."""

    gpu: GpuSpec
    # per operation, at the GPU's peak
    gops_per_w: float
    tops_per_mm2: float
    chip_efficiency_advantage: float  # chip figure-of-merit GOP/s/W / GPU's
    chip_area_advantage: float  # chip figure-of-merit TOP/s/mm^2 / GPU's
    # per image of the network, training at minibatch 1
    utilisation: float  # effective fraction of peak reached at minibatch 1 (after the step floor)
    time_per_image_s: float
    energy_per_image_j: float
    time_per_image_at_peak_s: float
    energy_per_image_at_peak_j: float
    chip_energy_per_image_advantage: float  # GPU J/image (at utilisation) / chip J/image
    chip_speed_advantage: float  # GPU s/image (at utilisation) / chip s/image

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gpu"] = asdict(self.gpu)
        d["gpu"]["gops_per_w"] = self.gpu.gops_per_w
        d["gpu"]["tops_per_mm2"] = self.gpu.tops_per_mm2
        return d


def gpu_run_estimate(
    gpu: GpuSpec, ops: float, gpu_params: GpuComparisonParams, *, steps: int = 1, at_peak: bool = False
) -> tuple[float, float]:
    """(seconds, joules) for ``steps`` training steps totalling ``ops`` operations on ``gpu``.

    At the assumed minibatch-1 operating point: ``t = max(ops / (peak * u), steps * t_floor)``,
    ``E = t * TDP * power_fraction``.  At peak: ``t = ops / peak``, ``E = t * TDP``.
    """
    peak = gpu.peak_fp16_tflops * 1e12
    if at_peak:
        seconds = ops / peak
        return seconds, seconds * gpu.tdp_w
    seconds = max(ops / (peak * gpu_params.minibatch1_utilisation), steps * gpu_params.minibatch1_step_floor_us * 1e-6)
    return seconds, seconds * gpu.tdp_w * gpu_params.power_fraction_of_tdp


def compare_gpus(
    *,
    ops_per_example: float,
    chip_gops_per_w: float,
    chip_tops_per_mm2: float,
    chip_time_per_image_s: float,
    chip_energy_per_image_j: float,
    gpu_params: GpuComparisonParams,
    gpus: tuple[GpuSpec, ...] = GPUS,
) -> list[GpuComparison]:
    """Compare the chip (figure of merit per op; the network per image) with each GPU."""
    out = []
    for gpu in gpus:
        t, e = gpu_run_estimate(gpu, ops_per_example, gpu_params)
        tp, ep = gpu_run_estimate(gpu, ops_per_example, gpu_params, at_peak=True)
        out.append(
            GpuComparison(
                gpu=gpu,
                gops_per_w=gpu.gops_per_w,
                tops_per_mm2=gpu.tops_per_mm2,
                chip_efficiency_advantage=chip_gops_per_w / gpu.gops_per_w,
                chip_area_advantage=chip_tops_per_mm2 / gpu.tops_per_mm2,
                utilisation=ops_per_example / (gpu.peak_fp16_tflops * 1e12 * t),
                time_per_image_s=t,
                energy_per_image_j=e,
                time_per_image_at_peak_s=tp,
                energy_per_image_at_peak_j=ep,
                chip_energy_per_image_advantage=e / chip_energy_per_image_j,
                chip_speed_advantage=t / chip_time_per_image_s,
            )
        )
    return out
