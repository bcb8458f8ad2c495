"""Shared helpers of the benchmark scripts: timing and table printing."""

from __future__ import annotations

import time
from typing import Callable


def best_time(fn: Callable[[], object], repeat: int = 3, min_time: float = 0.0) -> float:
    """Best wall time of ``repeat`` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def print_table(rows: list[dict], title: str = "") -> None:
    if title:
        print(title)
    cols = list(rows[0])
    cells = [[f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


#: OpenBLAS kernel families without AVX-512 (``threadpoolctl``'s ``architecture`` field).
_NO_AVX512_KERNELS = {"haswell", "zen", "sandybridge", "nehalem", "prescott", "core2",
                      "barcelona", "bulldozer", "piledriver", "steamroller", "excavator"}


def _cpu_flags() -> tuple[set, str, str]:
    """CPU feature flags, vendor and family from ``/proc/cpuinfo`` (empty off Linux)."""
    flags, vendor, family = set(), "", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "cpu family" and not family:
                    family = value.strip()
    except OSError:
        pass
    return flags, vendor, family


def blas_report() -> list[str]:
    """Lines describing the BLAS library NumPy uses, with a warning when its kernels do not
    match the CPU.

    NumPy's wheels bundle OpenBLAS with run-time kernel selection. OpenBLAS 0.3.31 (NumPy
    2.4.6's) does not know AMD's family 26 (Zen 5) and selects its AVX2 ``Haswell`` kernels
    (OpenMathLib/OpenBLAS#6029, fixed upstream by #6033); on the 2-core Zen 5 benchmark machine that
    is 60 instead of 92 GFLOP/s a core (10 x 200 x 200 batched DGEMM), while XLA (the JAX
    peers) uses AVX-512. ``OPENBLAS_CORETYPE=SkylakeX`` set before Python starts selects the
    AVX-512 kernels. The benchmarks print this so that a ratio against JAX is read with the
    BLAS kernels in view."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["BLAS: threadpoolctl is not installed; kernels unknown"]
    import numpy  # noqa: F401  (loads the BLAS library)

    flags, vendor, family = _cpu_flags()
    lines = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        arch = str(lib.get("architecture", "?"))
        lines.append(f"BLAS: {lib.get('internal_api')} {lib.get('version')} kernels {arch}, "
                     f"{lib.get('num_threads')} threads; CPU {vendor} family {family}"
                     f"{', AVX-512' if 'avx512f' in flags else ''}")
        if "avx512f" in flags and arch.lower() in _NO_AVX512_KERNELS:
            lines.append(f"WARNING: {lib.get('internal_api')} uses its {arch} (no AVX-512) kernels "
                         f"on a CPU with AVX-512 (OpenBLAS releases before the fix of "
                         f"OpenMathLib/OpenBLAS#6029 do not know AMD family 26, Zen 5). Matrix products run at about 2/3 "
                         f"of the CPU's rate; rerun with OPENBLAS_CORETYPE=SkylakeX to use its "
                         f"AVX-512 kernels.")
    return lines or ["BLAS: no BLAS library found by threadpoolctl"]
