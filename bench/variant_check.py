"""A variant-level check of a pretrained model on the project's own DNA: does its masked `llr` know the
human mutation spectrum?

No labelled variant set ships with the project, but one signal needs none: in human DNA, C->T at CpG
(and G->A on the other strand) is the most frequent point mutation by an order of magnitude, and
transitions outnumber transversions about 2:1. A model that learned human sequence should therefore give
those alleles a higher `llr` (log p(alt) - log p(ref) at the masked site) than the other substitutions
at comparable sites, and should prefer the reference base over a random one (llr < 0) most of the time.

Sites are drawn at random from the held-out validation region of `make pretrain-default` (never trained
on); every site carries all three alternative alleles, so each class is compared with alleles of the
same sites; half the sites are CpG sites. Every model scores the same VCF through the real `vepcli score` command.

    python bench/variant_check.py --model old=DIR --model new=DIR [--window 1024] [--sites 600]

Prints a Markdown table for docs/models.md. This is a sanity check of what the model learned, not a
benchmark of variant effect prediction.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from vepcli.genome import Genome

ROOT = Path(__file__).resolve().parents[1]
FASTA = ROOT.parent / "shared" / "data" / "GRCh37_chr22_subset.fa.gz"
HELD_OUT = ("22", 47_000_000, 51_304_566)  # 0-based start, end: the default model's --val-region
TRANSITION = {("A", "G"), ("G", "A"), ("C", "T"), ("T", "C")}


def draw_sites(genome: Genome, n: int, margin: int, seed: int) -> list[tuple[int, str, bool]]:
    """n (1-based position, upper-case ref, is-CpG) with +-margin bp of A/C/G/T around them: half of them
    at CpG sites (1-2% of sites, too few in a plain random draw), half at other sites."""
    contig, start, end = HELD_OUT
    rng, sites = random.Random(seed), {}
    want = {True: n // 2, False: n - n // 2}
    while want[True] or want[False]:
        pos0 = rng.randrange(start + margin, end - margin)
        flank = genome.fetch(contig, pos0 - margin, pos0 + margin + 1).upper()
        if pos0 + 1 in sites or not set(flank) <= set("ACGT"):
            continue
        ref, prev, nxt = flank[margin], flank[margin - 1], flank[margin + 1]
        cpg = (ref == "C" and nxt == "G") or (ref == "G" and prev == "C")
        if want[cpg]:
            sites[pos0 + 1] = (ref, cpg)
            want[cpg] -= 1
    return [(pos, ref, cpg) for pos, (ref, cpg) in sorted(sites.items())]


def write_vcf(path: Path, sites: list[tuple[int, str, bool]]) -> pd.DataFrame:
    rows = [(pos, ref, alt, cpg) for pos, ref, cpg in sites for alt in "ACGT" if alt != ref]
    with open(path, "w") as fh:
        fh.write(
            "##fileformat=VCFv4.2\n##contig=<ID=22,length=51304566>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        )
        fh.writelines(f"22\t{pos}\t.\t{ref}\t{alt}\t.\t.\t.\n" for pos, ref, alt, _ in rows)
    table = pd.DataFrame(rows, columns=["pos", "ref", "alt", "cpg_site"])
    table["transition"] = [(r, a) in TRANSITION for r, a in zip(table.ref, table.alt, strict=True)]
    table["cpg_transition"] = table.cpg_site & table.transition
    return table


def score(model: str, vcf: Path, out: Path, window: int, threads: int) -> tuple[pd.Series, float]:
    cmd = [sys.executable, "-m", "vepcli", "score", str(vcf), "-f", str(FASTA), "-m", model, "-o", str(out)]
    cmd += ["--window", str(window), "--scores", "llr", "--threads", str(threads), "--device", "cpu", "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return pd.read_csv(out, sep="\t", comment="#")["llr"], time.perf_counter() - t0


def summary(table: pd.DataFrame, llr: pd.Series) -> dict[str, float]:
    t = table.assign(llr=llr.to_numpy())
    cpg = t[t.cpg_site]  # alleles at CpG sites: is the CpG transition the most likely change?
    return {
        "llr < 0 (prefers the reference), non-CpG sites": float((t.llr[~t.cpg_site] < 0).mean()),
        "llr < 0, CpG sites": float((cpg.llr < 0).mean()),
        "mean llr": float(t.llr.mean()),
        "AUROC transition vs transversion": float(roc_auc_score(t.transition, t.llr)),
        "AUROC CpG transition vs other changes at CpG sites": float(roc_auc_score(cpg.cpg_transition, cpg.llr)),
        "mean llr, CpG transitions": float(t.llr[t.cpg_transition].mean()),
        "mean llr, other alleles": float(t.llr[~t.cpg_transition].mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, help="NAME=DIR; repeatable")
    ap.add_argument("--window", type=int, action="append", help="window(s) in bp [1024]")
    ap.add_argument("--sites", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    windows = args.window or [1024]
    genome = Genome(FASTA)
    sites = draw_sites(genome, args.sites, max(windows) // 2 + 1, args.seed)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        vcf = Path(tmp) / "sites.vcf"
        table = write_vcf(vcf, sites)
        for window in windows:
            for spec in args.model:
                name, model = spec.split("=", 1)
                llr, seconds = score(model, vcf, Path(tmp) / f"{name}.{window}.tsv", window, args.threads)
                results[f"{name}, {window} bp"] = {**summary(table, llr), "seconds": seconds}
    n_cpg = int(table.cpg_transition.sum())
    print(f"{len(sites)} sites, {len(table)} alleles ({n_cpg} CpG transitions), seed {args.seed}, held out region")
    keys = list(next(iter(results.values())))
    print("\n| | " + " | ".join(results) + " |\n|---|" + "---:|" * len(results))
    for key in keys:
        cells = (f"{r[key]:.0f}" if key == "seconds" else f"{r[key]:.3f}" for r in results.values())
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
