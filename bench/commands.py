"""Whole commands as a user runs them, with our CPU kernel and with the pure-PyTorch scan of version 0.1.

    .venv/bin/python bench/commands.py [--repeats 2] [--embed-n 600] [--embed-n-torch 60]

- `make demo`'s scoring: `vepcli score examples/demo.vcf` (48 alleles, the bundled model, its 1 kb window);
- embedding SNVs at 1 kb for a probe: `vepcli embed` of a labelled set built by
  tests/data/make_probe_set.py on the repository's chr22 slice (the pure-PyTorch scan gets a shorter
  list: the work per variant is fixed, so variants/s compare);
- threads: the demo with `--threads 2` against `--threads 1`, our kernel.
Runs alternate between settings (best of --repeats), so other jobs on a shared machine slow all alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VEPCLI = [sys.executable, "-m", "vepcli"]
FASTA = ROOT / "tests" / "data" / "chr22_slice.fa.gz"


def timed(cmd: list[str], scan: str) -> float:
    env = {**os.environ, "VEPCLI_SCAN": scan}
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--embed-n", type=int, default=600)
    ap.add_argument("--embed-n-torch", type=int, default=60)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        probe_set = out / "snvs.tsv"
        subprocess.run([sys.executable, str(ROOT / "tests/data/make_probe_set.py"), "--n", str(args.embed_n),
                        "-o", str(probe_set)], check=True, stdout=subprocess.DEVNULL)
        lines = probe_set.read_text().splitlines()
        short = out / "snvs_short.tsv"
        short.write_text("\n".join(lines[: args.embed_n_torch + 1]) + "\n")
        demo = [*VEPCLI, "score", "examples/demo.vcf", "-f", str(FASTA), "-q"]
        embed = [*VEPCLI, "embed", "-f", str(FASTA), "--window", "1024", "-q", "--threads", "1"]
        runs = {
            ("demo score, 48 alleles", "cpu", 1): (demo + ["-o", str(out / "a.tsv"), "--threads", "1"], "cpu", 48),
            ("demo score, 48 alleles", "torch", 1): (demo + ["-o", str(out / "b.tsv"), "--threads", "1"], "torch", 48),
            ("demo score, 48 alleles", "cpu", 2): (demo + ["-o", str(out / "c.tsv"), "--threads", "2"], "cpu", 48),
            (f"embed {args.embed_n} SNVs at 1 kb", "cpu", 1): (embed + [str(probe_set), "-o", str(out / "e.parquet")],
                                                             "cpu", args.embed_n),
            (f"embed {args.embed_n_torch} SNVs at 1 kb", "torch", 1): (
                embed + [str(short), "-o", str(out / "f.parquet")], "torch", args.embed_n_torch),
        }
        best = {key: float("inf") for key in runs}
        for _ in range(args.repeats):
            for key, (cmd, scan, _) in runs.items():
                for stale in out.glob("*.partial*"):
                    stale.unlink()
                best[key] = min(best[key], timed(cmd, scan))
    print(f"{platform.machine()}, {os.cpu_count()} cores; best of {args.repeats}, runs alternating\n")
    print("| command | scan | threads | seconds | alleles / s |")
    print("|---|---|---:|---:|---:|")
    for (name, scan, threads), t in best.items():
        print(f"| {name} | {scan} | {threads} | {t:.1f} | {runs[(name, scan, threads)][2] / t:.1f} |")


if __name__ == "__main__":
    main()
