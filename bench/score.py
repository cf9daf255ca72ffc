"""`vepcli score` throughput on CPU: variants per second with the 131k configuration.

A VCF of 1,000 SNVs on real chr22 DNA (../shared/data, GRCh37 chr22): 334 sites with every alternative
allele (as in saturation mutagenesis and in most annotation sets, where sites carry several ALTs), the
last one truncated.
The model is a Caduceus-PS of the published 131k shape (d_model 256, 16 layers) with random weights,
saved to a temporary directory. Each configuration scores the first `--n-variants` records of that
VCF (all 1,000 by default; fewer for long windows on a small CPU), through the real CLI code path.

    python bench/score.py [--windows 1024,8192] [--n-variants 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from vepcli.genome import Genome
from vepcli.nn import CaduceusConfig, CaduceusForMaskedLM
from vepcli.nn.checkpoint import save_model
from vepcli.pipeline import ScoreSettings, score_file

ROOT = Path(__file__).resolve().parents[1]
FASTA = ROOT.parent / "shared" / "data" / "GRCh37_chr22_subset.fa.gz"  # whole chr22: room for 8 kb N-free windows


def write_vcf(path: Path, n: int, margin: int) -> None:
    """n SNVs: every alternative allele at random sites whose +-margin bp hold no N."""
    genome = Genome(FASTA)
    contig = genome.contigs[0]
    length = genome.length(contig)
    rng = random.Random(0)
    sites: set[int] = set()
    while 3 * len(sites) < n:
        p = rng.randrange(margin + 1, length - margin)
        if "N" not in genome.fetch(contig, p - 1 - margin, p + margin):
            sites.add(p)
    lines = [
        "##fileformat=VCFv4.2",
        f"##contig=<ID={contig},length={length}>",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    count = 0
    for p in sorted(sites):
        ref = genome.fetch(contig, p - 1, p)
        for alt in (b for b in "ACGT" if b != ref):
            if count < n:
                lines.append(f"{contig}\t{p}\tv{count}\t{ref}\t{alt}\t.\t.\t.")
                count += 1
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", default="1024,8192")
    ap.add_argument("--n-variants", default="1000", help="one number, or one per window (comma-separated)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None, help="windows per pass [vepcli's default: 1 on a CPU]")
    ap.add_argument("--out", default="bench/out/score.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    windows = [int(w) for w in args.windows.split(",")]
    counts = [int(c) for c in args.n_variants.split(",")]
    counts = counts * len(windows) if len(counts) == 1 else counts
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_model(CaduceusForMaskedLM(CaduceusConfig(d_model=256, n_layer=16, rcps=True)), tmp / "model")
        vcf = tmp / "snvs.vcf"
        write_vcf(vcf, 1000, margin=max(windows) // 2)
        header = [x for x in vcf.read_text().splitlines() if x.startswith("#")]
        body = [x for x in vcf.read_text().splitlines() if not x.startswith("#")]
        for window, n in zip(windows, counts, strict=True):
            sub = tmp / f"snvs_{n}.vcf"
            sub.write_text("\n".join(header + body[:n]) + "\n")
            for share in (True, False):
                settings = ScoreSettings(
                    model=str(tmp / "model"), window=window, share_ref=share, batch_size=args.batch_size, device="cpu"
                )
                t = time.perf_counter()
                score_file(str(sub), str(FASTA), str(tmp / f"out_{window}_{share}.tsv"), settings, quiet=True)
                seconds = time.perf_counter() - t
                row = {
                    "window": window,
                    "variants": n,
                    "share_ref": share,
                    "seconds": round(seconds, 2),
                    "variants_per_s": round(n / seconds, 3),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"threads": args.threads, "batch_size": args.batch_size, "results": results}, indent=1)
    )


if __name__ == "__main__":
    main()
