"""Pretraining throughput on CPU: tokens per second of the training engine's optimizer steps (sampling,
forward, backward, clipping, AdamW, schedule), as `vepcli pretrain` takes them.

    .venv/bin/python bench/pretrain.py [--threads 1] [--steps 3] [--configs 32x2x256,64x4x1024] [--scans cpu,torch]

Each config is D_MODELxN_LAYERxSEQ_LEN[xD_STATE] (d_state 16 by default): Caduceus-PS, a batch of
--batch windows of real chr22 DNA masked by the recipe, once per scan backend (VEPCLI_SCAN), the
backends in alternation step by step so that load on a shared machine hits them alike. Prints a
Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from vepcli.malloc import keep_freed_memory
from vepcli.train.config import PretrainConfig
from vepcli.train.distributed import Dist
from vepcli.train.engine import Engine, Placement
from vepcli.train.pretrain import MaskedLMTask

FASTA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "GRCh37_chr22_subset.fa.gz"


def bench(
    fasta: Path,
    d_model: int,
    n_layer: int,
    seq_len: int,
    batch: int,
    steps: int,
    arch: str,
    d_state: int = 16,
    scans: tuple[str, ...] = ("cpu",),
) -> dict[str, dict]:
    """Seconds per optimizer step of the training engine's own step (train.engine), once per scan backend."""
    cfg = PretrainConfig(
        fasta=str(fasta),
        output="-",
        arch=arch,
        d_model=d_model,
        n_layer=n_layer,
        d_state=d_state,
        seq_len=seq_len,
        batch_size=batch,
        steps=steps + 1,
        val_regions=("22:47000001-51304566",),
        val_windows=1,
    )
    place = Placement(Dist(), torch.device("cpu"), None, micro=batch, accum=1)
    runs = {}
    for scan in scans:
        task = MaskedLMTask(cfg, place, Path(cfg.output))  # the same seed: the same initial weights
        runs[scan] = (task, Engine(cfg, place, task, Path(cfg.output)), [])
    for step in range(steps + 1):  # the first step warms up allocators and is not counted
        for scan, (task, engine, times) in runs.items():
            os.environ["VEPCLI_SCAN"] = scan
            t = time.perf_counter()
            engine.optimizer_step(task.net, step)
            times.append(time.perf_counter() - t)
    out = {}
    for scan, (task, _, times) in runs.items():
        per_step = sum(times[1:]) / steps
        out[scan] = {"params": task.model.num_parameters(), "s_per_step": per_step, "tok_s": batch * seq_len / per_step}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fasta", type=Path, default=FASTA)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--arch", default="caduceus-ps")
    ap.add_argument("--configs", default="32x2x256,64x4x1024,128x4x1024")
    ap.add_argument("--scans", default="cpu,torch", help="scan backends to compare (VEPCLI_SCAN values)")
    args = ap.parse_args()
    keep_freed_memory()  # as the CLI does
    scans = tuple(args.scans.split(","))
    torch.set_num_threads(args.threads)
    print(
        f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), {args.arch}, "
        f"batch {args.batch}, fp32, mean of {args.steps} steps after one warm-up step\n"
    )
    print("| d_model | n_layer | d_state | seq len | parameters | scan | s / step | tokens / s |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|")
    for spec in args.configs.split(","):
        d, n, L, *rest = (int(v) for v in spec.split("x"))
        N = rest[0] if rest else 16
        for scan, r in bench(args.fasta, d, n, L, args.batch, args.steps, args.arch, N, scans).items():
            print(
                f"| {d} | {n} | {N} | {L} | {r['params']:,} | {scan} | {r['s_per_step']:.2f} | {r['tok_s']:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
