"""Whole commands as a user runs them, with our CPU kernel and with the pure-PyTorch scan of version 0.1.

    git worktree add /tmp/v0.1 143c468      # optional: the version before the kernels, as the baseline
    .venv/bin/python bench/commands.py [--repeats 2] [--embed-n 600] [--embed-n-slow 60] [--baseline /tmp/v0.1]

- `make demo`'s scoring: `vepcli score examples/demo.vcf` (48 alleles, the bundled model, `make demo`'s
  `--window 1024`);
- embedding SNVs at 1 kb for a probe: `vepcli embed` of a labelled set built by
  tests/data/make_probe_set.py on the repository's chr22 slice (the slow settings get a shorter list:
  the work per variant is fixed, so alleles/s compare);
- threads: `--threads 2` against `--threads 1`, our kernel;
- with --baseline, the same commands run by an earlier checkout (its own defaults: batch 8, its scan, its
  bundled model), and by this version with that checkout's bundled model (the same model on both sides).
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
DEMO = ROOT / "examples" / "demo.vcf"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds of one run; `python -m vepcli` imports from the working directory: PYTHONPATH's tree, or ours."""
    t = time.perf_counter()
    subprocess.run(
        cmd,
        check=True,
        env={**os.environ, **env},
        cwd=env.get("PYTHONPATH", ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--embed-n", type=int, default=600)
    ap.add_argument("--embed-n-slow", type=int, default=60, help="SNVs for the slow settings")
    ap.add_argument("--baseline", type=Path, help="a checkout of an earlier version (git worktree add DIR v0.1)")
    args = ap.parse_args()
    # (label, environment, extra options, slow)
    settings = [
        ("this version", {}, [], False),
        ("this version, pure-PyTorch scan", {"VEPCLI_SCAN": "torch"}, [], True),
    ]
    if args.baseline:
        settings.append((f"baseline {args.baseline.name}", {"PYTHONPATH": str(args.baseline.resolve())}, [], True))
        old_model = args.baseline.resolve() / "models" / "caduceus-ps-chr22-small"
        settings.append((f"this version, {args.baseline.name}'s model", {}, ["-m", str(old_model)], False))
    settings.append(("this version, --threads 2", {}, ["--threads", "2"], False))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        probe_set = out / "snvs.tsv"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "tests/data/make_probe_set.py"),
                "--n",
                str(args.embed_n),
                "-o",
                str(probe_set),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        short = out / "snvs_short.tsv"
        short.write_text("\n".join(probe_set.read_text().splitlines()[: args.embed_n_slow + 1]) + "\n")
        runs = {}
        for i, (label, env, extra, slow) in enumerate(settings):
            opts = extra if "--threads" in extra else ["--threads", "1", *extra]
            common = ["-f", str(FASTA), "--window", "1024", "-q", *opts]  # make demo's window
            runs[("demo: score 48 alleles", label)] = (
                [*VEPCLI, "score", str(DEMO), *common, "-o", str(out / f"d{i}.tsv")],
                env,
                48,
            )
            n = args.embed_n_slow if slow else args.embed_n
            snvs = str(short if slow else probe_set)
            runs[(f"embed SNVs at 1 kb ({n})", label)] = (
                [*VEPCLI, "embed", snvs, *common, "-o", str(out / f"e{i}.parquet")],
                env,
                n,
            )
        best = {key: float("inf") for key in runs}
        for _ in range(args.repeats):
            for key, (cmd, env, _) in runs.items():
                for stale in out.glob("*.partial*"):
                    stale.unlink()
                best[key] = min(best[key], timed(cmd, env))
    print(f"{platform.machine()}, {os.cpu_count()} cores; best of {args.repeats}, runs alternating\n")
    print("| command | setting | seconds | alleles / s |")
    print("|---|---|---:|---:|")
    for (name, label), t in best.items():
        print(f"| {name} | {label} | {t:.1f} | {runs[(name, label)][2] / t:.1f} |")


if __name__ == "__main__":
    main()
