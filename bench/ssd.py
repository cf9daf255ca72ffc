"""The SSD scan of Mamba-2 alone: `ssd_chunked` against mamba_ssm's `ssd_minimal_discrete` and the
float64 step-by-step recurrence, side by side in one run.

    .venv/bin/python bench/ssd.py --ssd-minimal /path/to/mamba_ssm/modules/ssd_minimal.py \
        [--lengths 4096 16384] [--d-inner 512] [--headdim 64] [--d-state 16] [--threads 1]

`ssd_minimal.py` is mamba_ssm's own file (Listing 1 of the SSD paper), read from where it was fetched
and never copied here; it needs einops on the path. It imports mamba_ssm's Triton kernel at its top
without using it in `ssd_minimal_discrete`; where mamba_ssm is not installed, an empty stand-in module
answers that import. Every figure is the best of --repeats runs, the contenders measured in alternation
so that other jobs on a shared machine slow all of them alike. Inputs: batch 1, fp32, one group of B
and C, D skip; tokens/s counts sequence steps.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
import types
from collections.abc import Callable

import torch
import torch.nn.functional as F

from vepcli.nn.ssd import ssd_chunked, ssd_reference


def load_ssd_minimal(path: str) -> Callable:
    """mamba_ssm's `ssd_minimal_discrete`, imported from its file."""
    try:
        import mamba_ssm.ops.triton.ssd_combined  # noqa: F401
    except ImportError:
        names = ("mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.triton", "mamba_ssm.ops.triton.ssd_combined")
        for name in names:
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules[names[-1]].mamba_chunk_scan_combined = None
    spec = importlib.util.spec_from_file_location("ssd_minimal", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ssd_minimal_discrete


def once(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def contenders(L: int, args, ssd_minimal: Callable) -> dict[str, Callable[[], object]]:
    nheads = args.d_inner // args.headdim
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, L, nheads, args.headdim, generator=g)
    dt = F.softplus(torch.randn(1, L, nheads, generator=g) - 1)
    A = -torch.exp(torch.rand(nheads, generator=g) * 2)
    B, C = (torch.randn(1, L, 1, args.d_state, generator=g) for _ in range(2))
    D = torch.randn(nheads, generator=g)
    leaves = [t.clone().requires_grad_() for t in (x, dt, A, B, C, D)]

    def chunked(Q: int, grad: bool = False):
        if grad:
            return lambda: ssd_chunked(*leaves[:5], Q, leaves[5]).sum().backward()
        return lambda: ssd_chunked(x, dt, A, B, C, Q, D)

    def minimal(Q: int, grad: bool = False):
        def run():
            xs, dts, As, Bs, Cs, Ds = leaves if grad else (x, dt, A, B, C, D)
            Bh, Ch = (t.expand(-1, -1, nheads, -1) for t in (Bs, Cs))
            y, _ = ssd_minimal(xs * dts[..., None], As * dts, Bh, Ch, Q)
            y = y + xs * Ds[:, None]
            if grad:
                y.sum().backward()

        return run

    out = {f"ssd_chunked, chunk {Q}: forward": chunked(Q) for Q in args.chunks}
    out |= {f"ssd_minimal, block {Q}: forward": minimal(Q) for Q in args.chunks}
    Q = args.chunks[0]
    out[f"ssd_chunked, chunk {Q}: forward + backward"] = chunked(Q, grad=True)
    out[f"ssd_minimal, block {Q}: forward + backward"] = minimal(Q, grad=True)
    if not args.skip_reference:
        out["float64 recurrence: forward"] = lambda: ssd_reference(x, dt, A, B, C, D)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ssd-minimal", required=True, help="path of mamba_ssm's modules/ssd_minimal.py")
    ap.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--chunks", type=int, nargs="+", default=[32, 64, 256], help="the first one also backward")
    ap.add_argument("--d-inner", type=int, default=512)
    ap.add_argument("--headdim", type=int, default=64)
    ap.add_argument("--d-state", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-reference", action="store_true", help="leave out the slow float64 recurrence")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ssd_minimal = load_ssd_minimal(args.ssd_minimal)
    print(
        f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); batch 1, "
        f"d_inner {args.d_inner} ({args.d_inner // args.headdim} heads of {args.headdim}), d_state "
        f"{args.d_state}, 1 group, fp32; best of {args.repeats}\n"
    )
    print("| L | contender | ms | tokens/s | time / ssd_chunked forward |")
    print("|---:|---|---:|---:|---:|")
    for L in args.lengths:
        runs = contenders(L, args, ssd_minimal)
        for fn in runs.values():  # warm-up
            fn()
        times = dict.fromkeys(runs, float("inf"))
        for _ in range(args.repeats):
            for name, fn in runs.items():
                times[name] = min(times[name], once(fn))
        base = times[f"ssd_chunked, chunk {args.chunks[0]}: forward"]
        for name, t in times.items():
            print(f"| {L:,} | {name} | {t * 1e3:.1f} | {L / t:,.0f} | {t / base:.2f}x |")


if __name__ == "__main__":
    main()
