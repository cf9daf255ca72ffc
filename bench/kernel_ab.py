"""Two or more versions of the CPU kernels' source, timed side by side: how each kernel change was measured.

    git show HEAD~1:vepcli/nn/kernels/cpu_scan.cpp > /tmp/before.cpp
    .venv/bin/python bench/kernel_ab.py /tmp/before.cpp vepcli/nn/kernels/cpu_scan.cpp [--backward] [--conv]
        [--batch 1] [--length 8192] [--d-inner 512] [--d-state 16] [--groups 2] [--rounds 5]

Each source is compiled with the package's own flags into a temporary folder and called through the
package's own wrappers (`vepcli.nn.kernels.cpu`), the sources in alternation, best of --rounds, one
thread. Prints each source's time, its ratio to the first, and the largest relative difference of its
outputs (and gradients) from the first's: 0 means the same bits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import tempfile
import time
from pathlib import Path

import torch

from vepcli.nn.kernels import cpu


def build(source: Path, folder: Path, index: int) -> ctypes.CDLL:
    target = folder / f"kernel{index}.so"
    cpu.compile_source(source, target)
    return cpu.load_library(target)


@contextlib.contextmanager
def using(lib: ctypes.CDLL):
    """The package's wrappers call this build rather than the cached one while inside."""
    cached = cpu._library
    cpu._library = lambda: lib
    try:
        yield
    finally:
        cpu._library = cached


def workload(args: argparse.Namespace):
    """A function of no arguments that runs the kernel asked for and returns its outputs (and gradients)."""
    torch.manual_seed(0)
    B, L, D, N, G = args.batch, args.length, args.d_inner, args.d_state, args.groups
    grad = args.backward
    if args.conv:
        x = torch.randn(B, L, 2 * D)[..., :D].requires_grad_(grad)  # a view, as in_proj's x was
        w, b = torch.randn(G, D, 4).requires_grad_(grad), torch.randn(G, D).requires_grad_(grad)
        reverse = [g % 2 == 1 for g in range(G)]

        def run():
            y = cpu.conv1d_silu_cpu(x, w, b, reverse)
            return [y.detach(), *torch.autograd.grad(y, [x, w, b], torch.ones_like(y))] if grad else [y]

        return run
    inputs = [
        torch.randn(B, L, D),  # u
        torch.randn(B, L, D) * 0.5 - 2,  # delta before softplus
        -torch.rand(D, N) * 4 - 0.1,  # A
        torch.randn(B, L, N),  # B
        torch.randn(B, L, N),  # C
        torch.randn(D),  # D
        torch.randn(B, L, D),  # z
        torch.randn(D) * 0.1,  # delta bias
    ]
    inputs = [t.requires_grad_(grad) for t in inputs]

    def run():
        y = cpu.selective_scan_cpu(*inputs, True, None)
        return [y.detach(), *torch.autograd.grad(y, inputs, torch.ones_like(y))] if grad else [y]

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="+", type=Path)
    ap.add_argument("--backward", action="store_true", help="forward + backward")
    ap.add_argument("--conv", action="store_true", help="the conv + SiLU kernel instead of the scan")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--d-inner", type=int, default=512)
    ap.add_argument("--d-state", type=int, default=16)
    ap.add_argument("--groups", type=int, default=2, help="weight groups of the conv (BiMamba: 2)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = workload(args)
    with tempfile.TemporaryDirectory() as tmp:
        libs = [build(src, Path(tmp), i) for i, src in enumerate(args.sources)]
        outputs, best = [], [float("inf")] * len(libs)
        for lib in libs:
            with using(lib):
                outputs.append(run())
        for _ in range(args.rounds):
            for i, lib in enumerate(libs):
                with using(lib):
                    t = time.perf_counter()
                    run()
                    best[i] = min(best[i], time.perf_counter() - t)
    for src, t, out in zip(args.sources, best, outputs, strict=True):
        diff = max(
            ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() for a, b in zip(out, outputs[0], strict=True)
        )
        print(f"{str(src):45s} {t * 1e3:9.2f} ms  {t / best[0]:6.3f}x  max relative difference {diff:.1e}")


if __name__ == "__main__":
    main()
