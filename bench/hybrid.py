"""The hybrid Mamba-2/attention decoder against Caduceus at the same width and depth, side by side in one run:
forward cost per token (no grad, batch 1, logits) and pretraining tokens/s (the training engine's own
optimizer step: sampling, forward, backward, clipping, AdamW, as `vepcli pretrain` takes it).

    .venv/bin/python bench/hybrid.py [--configs 64x4x1024,64x4x4096,128x4x1024,128x4x4096] [--threads 1]

Each config is D_MODELxN_LAYERxSEQ_LEN. Models as `vepcli pretrain --arch ...` builds them with d_state 16:
Caduceus-PS, Caduceus-Ph, and the hybrid with its defaults (Mamba-2 headdim 64, the last layer attention
with d_model / 64 heads, no MLP). Contenders are measured in alternation, the minimum of --repeats for the
forward and the mean of --steps training steps after one warm-up, so that load on a shared machine hits
them alike. Prints Markdown tables for docs/benchmarks.md, ratios to Caduceus-PS first.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from vepcli.nn.ssd import ssd_backend
from vepcli.train.config import PretrainConfig
from vepcli.train.distributed import Dist
from vepcli.train.engine import Engine, Placement
from vepcli.train.pretrain import TASKS

FASTA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "GRCh37_chr22_subset.fa.gz"
ARCHS = ("caduceus-ps", "caduceus-ph", "hybrid")


def config(fasta: Path, arch: str, d_model: int, n_layer: int, seq_len: int, batch: int, steps: int):
    return PretrainConfig(
        fasta=str(fasta),
        output="-",
        arch=arch,
        d_model=d_model,
        n_layer=n_layer,
        d_state=16,
        seq_len=seq_len,
        batch_size=batch,
        steps=steps + 1,
        val_regions=("22:47000001-51304566",),
        val_windows=1,
    )


def bench(fasta: Path, d_model: int, n_layer: int, seq_len: int, args) -> dict[str, dict]:
    """Per arch: parameters, forward seconds per token, and training tokens/s."""
    place = Placement(Dist(), torch.device("cpu"), None, micro=args.batch, accum=1)
    runs = {}
    for arch in ARCHS:
        cfg = config(fasta, arch, d_model, n_layer, seq_len, args.batch, args.steps)
        task = TASKS[cfg.objective](cfg, place, Path(cfg.output))
        runs[arch] = (task, Engine(cfg, place, task, Path(cfg.output)))
    ids = torch.randint(7, 11, (1, seq_len), generator=torch.Generator().manual_seed(0))
    forward = dict.fromkeys(ARCHS, float("inf"))
    with torch.no_grad():
        for r in range(args.repeats + 1):  # the first round warms up
            for arch, (task, _) in runs.items():
                task.model.eval()
                t = time.perf_counter()
                task.model(ids)
                if r:
                    forward[arch] = min(forward[arch], time.perf_counter() - t)
    train = {arch: 0.0 for arch in ARCHS}
    for step in range(args.steps + 1):  # the first step warms up allocators and is not counted
        for arch, (task, engine) in runs.items():
            task.model.train()
            t = time.perf_counter()
            engine.optimizer_step(task.net, step)
            if step:
                train[arch] += time.perf_counter() - t
    return {
        arch: {
            "params": task.model.num_parameters(),
            "fwd_us_per_token": 1e6 * forward[arch] / seq_len,
            "train_tok_s": args.batch * seq_len * args.steps / train[arch],
        }
        for arch, (task, _) in runs.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fasta", type=Path, default=FASTA)
    ap.add_argument("--configs", default="64x4x1024,64x4x4096,128x4x1024,128x4x4096")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4, help="windows per training step")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), SSD backend "
        f"{ssd_backend(torch.device('cpu'))}, fp32; forward: batch 1, best of {args.repeats}; training: batch "
        f"{args.batch}, mean of {args.steps} steps after one warm-up\n"
    )
    print("| d_model | n_layer | L | model | parameters | forward µs / token | x PS | train tokens / s | x PS |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for spec in args.configs.split(","):
        d, n, L = (int(v) for v in spec.split("x"))
        res = bench(args.fasta, d, n, L, args)
        ps = res["caduceus-ps"]
        for arch, r in res.items():
            print(
                f"| {d} | {n} | {L:,} | {arch} | {r['params']:,} | {r['fwd_us_per_token']:.1f} | "
                f"{r['fwd_us_per_token'] / ps['fwd_us_per_token']:.2f} | {r['train_tok_s']:,.0f} | "
                f"{r['train_tok_s'] / ps['train_tok_s']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
