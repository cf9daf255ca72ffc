"""workflow/Snakefile end to end: real `snakemake --cores 2` runs (split, score, merge) on small data.

* 3 shards of the example data merge into what one unsharded `vepcli score` writes (but for the
  ##vepcli_command line).
* After a finished run nothing is planned; after a shard job is lost (its output and so the merged
  output missing), only that shard and the merge, and redoing them gives byte-identical merged output.
* `by: chromosome` with a job killed halfway: the next run redoes only that job, which resumes from
  its finished blocks, and the merged TSV equals the unsharded one byte for byte.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pysam
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
MODEL = ROOT / "tests" / "fixtures" / "caduceus-hf" / "caduceus-ps-tiny"
DATA = ROOT / "tests" / "data"
BIN = Path(sys.executable).parent
SNAKEMAKE = shutil.which("snakemake", path=str(BIN)) or shutil.which("snakemake")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake (the dev extra) is not installed"),
]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # the venv's vepcli first
    return {**env, **extra}


KILLED_VEPCLI = """#!{python}
# vepcli, killed with SIGKILL (as a node failure or an OOM killer would) once a score run has stored block {block}
import os, signal
from vepcli.cli import main
from vepcli.output import PartialStore

store_block = PartialStore.add_block


def store_then_die(self, block, rows):
    store_block(self, block, rows)
    if block >= {block}:
        os.kill(os.getpid(), signal.SIGKILL)


PartialStore.add_block = store_then_die
main()
"""


def _env_killed_after_block(tmp_path: Path, block: int) -> dict[str, str]:
    """An environment whose `vepcli` is killed after storing block `block` of each score job."""
    bin_dir = tmp_path / "killed-bin"
    bin_dir.mkdir()
    script = bin_dir / "vepcli"
    script.write_text(KILLED_VEPCLI.format(python=sys.executable, block=block))
    script.chmod(0o755)
    env = _env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def snakemake(workdir: Path, config: dict, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "test-config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [SNAKEMAKE, "--cores", "2", "-s", str(SNAKEFILE), "--configfile", str(cfg), "-d", str(workdir), *args]
    return subprocess.run(cmd, cwd=workdir, env=env or _env(), capture_output=True, text=True, timeout=400)


def planned(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> number of jobs, from the 'Job stats' table a run or dry run prints ({} when nothing is to be done)."""
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    counts = dict((m[1], int(m[2])) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M))
    counts.pop("total", None)
    return counts


def vepcli_score(variants: Path, fasta: Path, out: Path, *options: str) -> subprocess.Popen:
    cmd = [
        str(BIN / "vepcli"),
        "score",
        str(variants),
        "-f",
        str(fasta),
        "-m",
        str(MODEL),
        "-o",
        str(out),
        "--window",
        "512",
        "--threads",
        "1",
        "-q",
        *options,
    ]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err


def text_of(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return f.read()


def comparable(path: Path) -> str:
    """The file without the lines that name the command or the shard."""
    return "".join(
        x for x in text_of(path).splitlines(keepends=True) if not x.startswith(("##vepcli_command=", "##vepcli_shard="))
    )


def test_shards_merge_to_the_unsharded_run_and_a_rerun_is_identical(tmp_path):
    whole = vepcli_score(DATA / "chr22_slice.vcf", DATA / "chr22_slice.fa.gz", tmp_path / "whole.vcf.gz")
    config = {
        "variants": str(DATA / "chr22_slice.vcf"),
        "fasta": str(DATA / "chr22_slice.fa.gz"),
        "model": str(MODEL),
        "output": "out/scored.vcf.gz",
        "shards": 3,
        "window": 512,
        "threads": 1,
        "device": "cpu",
    }
    wd = tmp_path / "run"
    try:
        first = snakemake(wd, config)
    finally:
        finish(whole)
    assert first.returncode == 0, first.stderr[-3000:]
    merged = wd / "out" / "scored.vcf.gz"
    parts = sorted((wd / "out" / "scored.parts").glob("shard-*-of-3.vcf"))
    assert [p.name for p in parts] == [f"shard-{i}-of-3.vcf" for i in (1, 2, 3)]
    assert all(f"##vepcli_shard={i}/3\n" in p.read_text() for i, p in enumerate(parts, 1))
    assert comparable(merged) == comparable(tmp_path / "whole.vcf.gz")
    with pysam.TabixFile(str(merged)) as tbx:  # sorted, bgzipped and indexed
        assert len(list(tbx.fetch("22"))) == text_of(merged).count("\n22\t")
    first_bytes = merged.read_bytes(), Path(f"{merged}.tbi").read_bytes()

    # done: nothing to redo. A shard job killed: its output missing (vepcli writes it only when complete)
    # and so the merged output; only that shard and the merge are planned, and the rerun gives the same bytes
    assert planned(snakemake(wd, config, "-n")) == {}
    mtimes = {p.name: p.stat().st_mtime_ns for p in parts}
    for lost in (parts[1], merged, Path(f"{merged}.tbi")):
        lost.unlink()
    again = snakemake(wd, config)
    assert planned(again) == {"score": 1, "merge": 1, "all": 1}
    assert "part=shard-2-of-3" in again.stdout + again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in parts if p != parts[1]} == {
        name: t for name, t in mtimes.items() if name != parts[1].name
    }
    assert (merged.read_bytes(), Path(f"{merged}.tbi").read_bytes()) == first_bytes


def _two_contig_inputs(folder: Path) -> tuple[Path, Path]:
    """Contig 22 with a few records; X with 140 (3 blocks of 64), mostly indels, which cost nothing with
    --scores llr, and every 7th an SNV; grouped by contig as a sorted VCF is."""
    seq = "".join((DATA / "chr22_slice.fa").read_text().split("\n", 1)[1].split())
    contigs = {"22": seq[:6000], "X": seq[60000:61000]}
    fasta = folder / "two.fa"
    fasta.write_text(
        "".join(f">{n}\n" + "\n".join(s[i : i + 60] for i in range(0, len(s), 60)) + "\n" for n, s in contigs.items())
    )
    pysam.faidx(str(fasta))
    rng = random.Random(3)
    rows = []
    for pos in sorted(rng.sample(range(700, 5300), 6)):
        ref = contigs["22"][pos - 1].upper()
        rows.append(("22", pos, ref, next(b for b in "ACGT" if b != ref)))
    x = contigs["X"]
    for k, pos in enumerate(range(300, 440)):
        ref = x[pos - 1].upper()
        rows.append(
            ("X", pos, ref, next(b for b in "ACGT" if b != ref))
            if k % 7 == 0
            else ("X", pos, ref + x[pos].upper(), ref)
            if k % 2
            else ("X", pos, ref, ref + "T")
        )
    vcf = folder / "vars.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        + "".join(f"{c}\t{p}\t.\t{r}\t{a}\t.\t.\t.\n" for c, p, r, a in rows)
    )
    return fasta, vcf


def test_by_chromosome_killed_job_is_redone_alone_and_resumes(tmp_path):
    fasta, vcf = _two_contig_inputs(tmp_path)
    whole = vepcli_score(vcf, fasta, tmp_path / "whole.tsv", "--scores", "llr")
    config = {
        "variants": str(vcf),
        "fasta": str(fasta),
        "model": str(MODEL),
        "output": "out/scored.tsv",
        "by": "chromosome",
        "window": 512,
        "threads": 1,
        "device": "cpu",
        "score_extra": "--scores llr",
    }
    wd = tmp_path / "run"
    parts = wd / "out" / "scored.parts"
    # contig X's job is killed (as by a signal) after its second block; contig 22's finishes
    try:
        killed = snakemake(wd, config, "--keep-going", env=_env_killed_after_block(tmp_path, 1))
    finally:
        finish(whole)
    assert killed.returncode != 0
    done, lost = parts / "contig-22.tsv", parts / "contig-X.tsv"
    assert done.exists() and not lost.exists() and not (wd / "out" / "scored.tsv").exists()
    store = (parts / "contig-X.tsv.partial" / "rows.jsonl").read_text()
    assert '{"block_end": 1}' in store and '{"block_end": 2}' not in store
    kept = done.stat().st_mtime_ns

    rerun = snakemake(wd, config)
    assert planned(rerun) == {"score": 1, "merge": 1, "all": 1}
    assert "part=contig-X" in rerun.stdout + rerun.stderr
    assert done.stat().st_mtime_ns == kept  # contig 22 not redone
    assert lost.exists() and not (parts / "contig-X.tsv.partial").exists()
    merged = wd / "out" / "scored.tsv"
    assert comparable(merged) == comparable(tmp_path / "whole.tsv")  # index renumbered to the input's


def test_plan_by_chromosome_from_the_index_with_probe_and_resources(tmp_path):
    """Dry run: contigs read from the .tbi (in file order), the optional probe step, resources declared."""
    fasta, vcf = _two_contig_inputs(tmp_path)
    pysam.tabix_compress(str(vcf), str(vcf) + ".gz")
    pysam.tabix_index(str(vcf) + ".gz", preset="vcf")
    (tmp_path / "probe.skops").write_bytes(b"")
    config = {
        "variants": f"{vcf}.gz",
        "fasta": str(fasta),
        "model": str(MODEL),
        "output": "out/s.parquet",
        "by": "chromosome",
        "threads": 1,
        "mem_mb": 1234,
        "gpus": 1,
        "runtime": 30,
        "probe": {"model": str(tmp_path / "probe.skops")},
    }
    plan = snakemake(tmp_path / "run", config, "-n", "-p")
    text = plan.stdout + plan.stderr
    assert planned(plan) == {"score": 2, "merge": 1, "embed": 2, "merge_embeddings": 1, "probe": 1, "all": 1}
    assert "merge out/s.parts/contig-22.parquet out/s.parts/contig-X.parquet -o out/s.parquet" in text
    assert "--regions X" in text and "--threads 1 --resume" in text
    assert re.search(r"probe eval \S*probe.skops out/s.embeddings.parquet --plots out/s.probe -o out/s.probe.tsv", text)
    assert re.search(r"gpu=1, runtime=30, mem_mb=1234", text)
