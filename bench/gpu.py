"""Scoring at 131,072 bp on a CUDA GPU: our Triton scan against mamba_ssm's, our protocol against the published one.

Models: Caduceus-PS and Caduceus-Ph of the published 131k shape (d_model 256, 16 layers, d_state 16, expand 2),
random weights. The scan backend is chosen per run through VEPCLI_SCAN (the dispatch reads it at each call):
`triton` (ours) and `mamba_ssm` (its CUDA kernel; skipped with a note where it is not installed). Rows:
  - forward: one window through the inference engine (Ph: two rows, the window and its reverse complement),
    fp32 and bf16;
  - ours: the engine as `vepcli score` drives it for the embedding scores: sites with three ALT alleles, one ref
    window shared by them, batches of --batch-size windows, strands averaged in the same pass; fp32 and bf16;
  - published: the protocol of the Caduceus paper: fp16, batch 1, four passes per variant (ref and alt, each on
    both strands), nothing shared.
Times are the best of --repeats runs after a warm-up run (Triton compiles on first use). Needs CUDA; prints one
line and exits elsewhere.

    python bench/gpu.py [--length 131072] [--sites 2] [--published-variants 2] [--repeats 2]
                        [--backends triton,mamba_ssm] [--out bench/out/gpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import torch

from vepcli.infer import Engine, Request
from vepcli.nn import CaduceusConfig, CaduceusForMaskedLM, kernels
from vepcli.scores import pool_span

D_MODEL, N_LAYER = 256, 16  # the published 131k models; d_state 16 and expand 2 are the config defaults
COMPLEMENT = str.maketrans("ACGT", "TGCA")


def versions() -> dict[str, str]:
    out = {
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "gpu": torch.cuda.get_device_name(),
        "capability": ".".join(map(str, torch.cuda.get_device_capability())),
    }
    for name in ("triton", "mamba_ssm"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - missing or broken: say so in the table
            out[name] = "not installed"
    return out


def usable_backends(names: list[str]) -> list[str]:
    usable = []
    for name in names:
        if name == "mamba_ssm" and kernels._mamba_ssm_scan is None:
            print("note: mamba_ssm's selective_scan_fn does not import here: its rows are skipped", flush=True)
        elif name == "triton" and kernels._triton() is None:
            print("note: Triton does not import here: the triton rows are skipped", flush=True)
        else:
            usable.append(name)
    return usable


def variant_windows(length: int, sites: int, seed: int = 0):
    """`sites` random windows with the variant at length // 2, each with its three ALT versions."""
    rng = random.Random(seed)
    centre = length // 2
    out = []
    for _ in range(sites):
        ref = "".join(rng.choice("ACGT") for _ in range(length))
        alts = [ref[:centre] + b + ref[centre + 1 :] for b in "ACGT" if b != ref[centre]]
        out.append((ref, alts))
    return out


def reverse_complement(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


def ours(windows, span) -> tuple[list[Request], int]:
    """Requests as `vepcli score` makes them for the embedding scores: one shared ref window per site."""
    requests = [Request(seq, pool=span) for ref, alts in windows for seq in (ref, *alts)]
    return requests, sum(len(alts) for _, alts in windows)


def published(windows, span, n_variants: int) -> tuple[list[Request], int]:
    """Four single-strand passes per variant: ref, its reverse complement, alt, its reverse complement."""
    pairs = [(ref, alt) for ref, alts in windows for alt in alts][:n_variants]
    requests = [
        Request(s, pool=span)
        for ref, alt in pairs
        for s in (ref, reverse_complement(ref), alt, reverse_complement(alt))
    ]
    return requests, len(pairs)


def best_time(engine: Engine, requests: list[Request], repeats: int) -> float:
    engine.run(requests[:1])  # warm-up: Triton compiles, cuBLAS picks its kernels, the allocator grows
    best = float("inf")
    for _ in range(repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        engine.run(requests)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--length", type=int, default=131072)
    ap.add_argument("--sites", type=int, default=2, help="sites for `ours` (three ALTs each: four windows a site)")
    ap.add_argument("--published-variants", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--backends", default="triton,mamba_ssm")
    ap.add_argument("--out", default="bench/out/gpu.json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu.py needs a CUDA GPU and torch.cuda.is_available() is False here: nothing to time")
    info = versions()
    print("  ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    backends = usable_backends(args.backends.split(","))
    torch.manual_seed(0)
    windows = variant_windows(args.length, max(args.sites, (args.published_variants + 2) // 3))
    span = pool_span(args.length, args.length // 2)
    mine, n_mine = ours(windows[: args.sites], span)
    theirs, n_theirs = published(windows, span, args.published_variants)
    runs = []  # (model, protocol, precision, batch, strand_average, requests, variants)
    for model in ("PS", "Ph"):
        for precision in ("fp32", "bf16"):
            runs.append((model, "forward", precision, 1, True, mine[:1], 0))
            runs.append((model, "ours", precision, args.batch_size, True, mine, n_mine))
        runs.append((model, "published", "fp16", 1, False, theirs, n_theirs))
    rows = []
    print(
        f"\n{'model':<5} {'protocol':<10} {'prec':<5} {'scan':<10} {'windows':>7} {'seconds':>8} "
        f"{'s/window':>8} {'variants/s':>10} {'peak GiB':>8}",
        flush=True,
    )
    for model_name in ("PS", "Ph"):
        model = CaduceusForMaskedLM(CaduceusConfig(d_model=D_MODEL, n_layer=N_LAYER, rcps=model_name == "PS"))
        model = model.to("cuda").eval()
        for name, protocol, precision, batch, strands, requests, variants in runs:
            if name != model_name:
                continue
            for backend in backends:
                os.environ["VEPCLI_SCAN"] = backend
                engine = Engine(model, device="cuda", precision=precision, batch_size=batch, strand_average=strands)
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                seconds = best_time(engine, requests, args.repeats)
                row = {
                    "model": name,
                    "protocol": protocol,
                    "precision": precision,
                    "scan": backend,
                    "batch": batch,
                    "windows": len(requests),
                    "variants": variants,
                    "seconds": round(seconds, 4),
                    "seconds_per_window": round(seconds / len(requests), 4),
                    "variants_per_s": round(variants / seconds, 3) if variants else None,
                    "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                }
                rows.append(row)
                vps = f"{row['variants_per_s']:>10.3f}" if variants else f"{'':>10}"
                print(
                    f"{name:<5} {protocol:<10} {precision:<5} {backend:<10} {len(requests):>7} {seconds:>8.3f} "
                    f"{row['seconds_per_window']:>8.4f} {vps} {row['peak_gib']:>8.2f}",
                    flush=True,
                )
        del model
    os.environ.pop("VEPCLI_SCAN", None)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"versions": info, "length": args.length, "rows": rows}, indent=1))
    print(f"\nwritten: {args.out}", flush=True)


if __name__ == "__main__":
    main()
