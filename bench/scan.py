"""The selective scan alone: our CPU kernel and the pure-PyTorch scan against PyTorch's own exp.

    .venv/bin/python bench/scan.py [--length 8192] [--d-inner 512] [--d-state 16] [--threads 1]

A scan cannot do less than one exp per element of (L, d_inner, d_state), so the yardstick is
PyTorch's vectorised `torch.exp` over that many elements, timed two ways in the same run:
- "exp over the (L, D, N) tensor": one call over the whole tensor (what a framework op costs; it
  streams 4 bytes in and out of memory per element);
- "exp in cache": 32 steps' worth of elements at a time, L / 32 calls on a buffer that stays in cache
  (the arithmetic alone, the tighter bound).
Every figure is the best of --repeats runs, the candidates measured in alternation so that other jobs
on a shared machine slow all of them alike. Inputs: batch 1, fp32, softplus, D skip and SiLU gate.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from vepcli.nn.kernels import selective_scan


def best(fn, repeats: int) -> float:
    fn()
    out = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=8192)
    ap.add_argument("--d-inner", type=int, default=512)
    ap.add_argument("--d-state", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-torch", action="store_true", help="leave out the slow pure-PyTorch scan")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    L, D, N = args.length, args.d_inner, args.d_state
    g = torch.Generator().manual_seed(0)
    u, delta, z = (torch.randn(1, L, D, generator=g) for _ in range(3))
    B, C = (torch.randn(1, L, N, generator=g) for _ in range(2))
    A, Dp, bias = -torch.rand(D, N, generator=g) * 4, torch.randn(D, generator=g), torch.randn(D, generator=g)
    whole = torch.randn(L, D, N, generator=g)
    tile, tile_out = torch.randn(32, D, N, generator=g), torch.empty(32, D, N)
    params = [t.clone().requires_grad_() for t in (u, delta, A, B, C, Dp, z, bias)]

    def scan_with(backend: str, grad: bool):
        def run():
            os.environ["VEPCLI_SCAN"] = backend
            if grad:
                selective_scan(*params).sum().backward()
            else:
                with torch.no_grad():
                    selective_scan(u, delta, A, B, C, Dp, z, bias)

        return run

    def exp_in_cache():
        for _ in range(L // 32):
            torch.exp(tile, out=tile_out)

    candidates = {
        "exp over the (L, D, N) tensor": lambda: torch.exp(whole),
        "exp in cache": exp_in_cache,
        "cpu kernel: forward": scan_with("cpu", False),
        "cpu kernel: forward + backward": scan_with("cpu", True),
    }
    if not args.skip_torch:
        candidates["torch scan: forward"] = scan_with("torch", False)
        candidates["torch scan: forward + backward"] = scan_with("torch", True)
    times = {name: float("inf") for name in candidates}
    for _ in range(args.repeats):
        for name, fn in candidates.items():
            times[name] = min(times[name], best(fn, 1))
    print(
        f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); L {L}, d_inner {D}, "
        f"d_state {N}; best of {args.repeats}\n"
    )
    print("| | ms | µs / step | / exp over (L, D, N) | / exp in cache |")
    print("|---|---:|---:|---:|---:|")
    for name, t in times.items():
        print(
            f"| {name} | {t * 1e3:.1f} | {t / L * 1e6:.2f} | {t / times['exp over the (L, D, N) tensor']:.2f}x "
            f"| {t / times['exp in cache']:.2f}x |"
        )


if __name__ == "__main__":
    main()
