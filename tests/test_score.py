"""`vepcli score` end to end, on the real chr22 slice with the two tiny fixture models.

Expectations are computed independently of the code under test: FASTA bases are read with plain
Python (conftest.read_fasta_plain), windows are cut by string slicing, and the model is run here
(`CaduceusForMaskedLM` forward, log_softmax, strand averaging and pooling written out below).
End-to-end runs go through the CLI in a subprocess; the rest call `vepcli.pipeline.score_file`.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from naive_windows import naive_alt as alt_win
from naive_windows import naive_ref as ref_win

from vepcli import __version__
from vepcli.errors import UserError
from vepcli.infer import Engine
from vepcli.nn.checkpoint import load_model
from vepcli.output import read_scores
from vepcli.pipeline import BLOCK, ScoreSettings, score_file

torch.set_num_threads(1)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "caduceus-hf"  # vendored, see its README.md
MODELS = {"ps": FIXTURES / "caduceus-ps-tiny", "ph": FIXTURES / "caduceus-ph-tiny"}
W = 256  # window of most runs here
SCORES = ("llr", "emb_l2", "emb_cos")
VCF_HEADER = (
    "##fileformat=VCFv4.2\n##contig=<ID=22,length=99500>\n##contig=<ID=chr22,length=99500>\n"
    "##contig=<ID=chr5>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
)
N_HEADER_LINES = VCF_HEADER.count("\n")  # the first record is on line N_HEADER_LINES + 1


# ------------------------------------------------------------------ helpers (independent of vepcli)


def write_vcf(path: Path, records) -> Path:
    lines = ["\t".join([c, str(p), i, r, a, ".", ".", "."]) + "\n" for c, p, i, r, a in records]
    path.write_text(VCF_HEADER + "".join(lines))
    return path


def n_alts(records) -> int:
    return sum(len(a.split(",")) for *_, a in records)


def other(base: str) -> str:
    return {"A": "C", "C": "G", "G": "T", "T": "A"}[base.upper()]


TOKEN = {"A": 7, "C": 8, "G": 9, "T": 10, "N": 11}
COMP = {7: 10, 10: 7, 8: 9, 9: 8}  # A<->T, C<->G; every other id is its own complement
MASK_ID = 3


def ids_of(s: str) -> torch.Tensor:
    return torch.tensor([TOKEN[c] for c in s], dtype=torch.long)


def rc_of(ids: torch.Tensor) -> torch.Tensor:
    return torch.tensor([COMP.get(int(t), int(t)) for t in ids.flip(0)], dtype=torch.long)


def forward(model, batch: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Our own forward pass: (logits, last hidden state) of CaduceusForMaskedLM for each sequence."""
    with torch.no_grad():
        logits, hidden = model(torch.stack(batch), return_hidden=True)
    return logits.float(), hidden.float()


def per_base_hidden(model, ids: torch.Tensor, strand_average: bool) -> torch.Tensor:
    """(L, d): PS: mean of its forward half and its flipped RC half; Ph: mean with the RC pass flipped back."""
    d = model.config.d_model
    _, h = forward(model, [ids, rc_of(ids)])
    if model.config.rcps:
        fwd = h[0, :, :d]
        return 0.5 * (fwd + h[0, :, d:].flip(-1)) if strand_average else fwd
    return 0.5 * (h[0] + h[1].flip(0)) if strand_average else h[0]


def per_base_logp(model, ids: torch.Tensor, strand_average: bool) -> torch.Tensor:
    """(L, vocab) log-probabilities; Ph averages with the RC pass at L-1-p, complemented bases."""
    logits, _ = forward(model, [ids, rc_of(ids)])
    lp = torch.log_softmax(logits[0], -1)
    if model.config.rcps or not strand_average:
        return lp
    lp_rc = torch.log_softmax(logits[1], -1).flip(0)  # row p: the RC pass at L-1-p
    perm = [COMP.get(i, i) for i in range(lp.shape[1])]
    return 0.5 * (lp + lp_rc[:, perm])


def expected_scores(model, seq: str, pos: int, ref: str, alt: str, w: int, pool: int, strand_average: bool):
    """llr / emb_l2 / emb_cos for one (already trimmed) allele, computed from scratch."""
    ref, alt = ref.upper(), alt.upper()
    c = w // 2
    rw, aw = ref_win(seq, pos, w), alt_win(seq, pos, ref, alt, w)
    assert len(rw) == len(aw) == w
    s, e = max(0, c - pool // 2), min(w, c + pool // 2 + 1)
    r_vec = per_base_hidden(model, ids_of(rw), strand_average)[s:e].mean(0).double()
    a_vec = per_base_hidden(model, ids_of(aw), strand_average)[s:e].mean(0).double()
    out = {
        "emb_l2": float((a_vec - r_vec).norm()),
        "emb_cos": float(1 - (a_vec @ r_vec) / (a_vec.norm() * r_vec.norm())),
        "llr": None,
    }
    if len(ref) == len(alt):  # snv / mnv: mask every changed position in one pass
        masked = ids_of(rw)
        masked[c : c + len(ref)] = MASK_ID
        lp = per_base_logp(model, masked, strand_average)
        out["llr"] = float(sum(lp[c + k, TOKEN[alt[k]]] - lp[c + k, TOKEN[ref[k]]] for k in range(len(ref))))
    return out


def run_cli(*args, env: dict | None = None, quiet: bool = True) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})})
    cmd = [sys.executable, "-m", "vepcli", "score", *map(str, args), "--threads", "1", "--device", "cpu"]
    if quiet:
        cmd.append("-q")
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=600)


def score_lib(
    variants: Path, out: Path, model: str = "ps", fasta: Path | None = None, resume: bool = False, progress=None, **kw
) -> Path:
    kw.setdefault("window", W)
    settings = ScoreSettings(model=str(MODELS[model]), device="cpu", **kw)
    fasta = fasta or Path(__file__).resolve().parent / "data" / "chr22_slice.fa"
    return score_file(str(variants), str(fasta), str(out), settings, resume=resume, quiet=True, progress=progress)


KILL_AFTER_FIRST_BLOCK = """
import os, signal, sys
from vepcli.pipeline import ScoreSettings, score_file
variants, fasta, out, model, window = sys.argv[1:]
settings = ScoreSettings(model=model, window=int(window), scores=("llr",), device="cpu")
score_file(variants, fasta, out, settings, quiet=True, progress=lambda n: os.kill(os.getpid(), signal.SIGKILL))
"""


def interrupt(*args) -> None:
    """A `progress` callback that stops the run as Ctrl-C does, after the first block is stored."""
    raise KeyboardInterrupt


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def leftovers(folder: Path, inputs: set[str]) -> list[str]:
    """Everything in folder that is not one of the inputs (outputs, partial stores, temp files)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in inputs)


# ------------------------------------------------------------------ the main VCF, through the CLI


def main_records(seq: str):
    """(chrom, pos, id, ref, alt) lines and, per ALT allele, the status it must get."""
    R = lambda p: seq[p - 1].upper()  # noqa: E731
    recs = [
        ("22", 1, "first", R(1), other(R(1))),  # contig start: window half N
        ("22", 501, "snv", R(501), other(R(501))),
        ("chr22", 501, "chrpfx", R(501), other(R(501))),  # chr prefix vs `22` in the FASTA
        ("22", 1000, "mnv", seq[999:1001].upper(), "GC"),
        ("22", 1383, "lowref", seq[1382].lower(), other(seq[1382]).lower()),  # lower case in the VCF
        ("22", 1382, "lowfa", R(1382), other(R(1382))),  # lower case (soft-masked) in the FASTA
        ("22", 2000, "ins", R(2000), R(2000) + "TTA"),
        ("22", 3586, "del", seq[3585:3589].upper(), R(3586)),
        ("22", 4000, "multi", R(4000), ",".join(b for b in "ACG" if b != R(4000)) + ",*"),
        ("22", 4000, "multi2", R(4000), "T" if R(4000) != "T" else "A"),
        ("22", 900, "gvcf", R(900), other(R(900)) + ",<*>"),
        ("22", 5000, "sym", R(5000), "<DEL>"),
        ("22", 700, "noalt", R(700), "."),
        ("22", 800, "invalid", R(800), "R"),
        ("chr5", 100, "missing", "A", "C"),
        ("22", 600, "mismatch", other(R(600)), R(600)),
        ("22", 25197, "inN", "N", "A"),
        ("22", 25198, "inN2", "A", "G"),  # FASTA N matches any REF base: ref_is_N, not ref_mismatch
        ("22", 99500, "last", R(99500), other(R(99500))),  # contig end
        ("22", 99501, "outside", "A", "C"),
    ]
    assert "N" not in seq[1999] + seq[3585:3589] and seq[25196] == "N" and len(seq) == 99500
    status = {
        "first": ["ok"],
        "snv": ["ok"],
        "chrpfx": ["ok"],
        "mnv": ["ok"],
        "lowref": ["ok"],
        "lowfa": ["ok"],
        "ins": ["ok"],
        "del": ["ok"],
        "multi": ["ok", "ok", "star_allele"],
        "multi2": ["ok"],
        "gvcf": ["ok", "symbolic_allele"],
        "sym": ["symbolic_allele"],
        "noalt": ["no_alt"],
        "invalid": ["invalid_allele"],
        "missing": ["contig_missing"],
        "mismatch": ["ref_mismatch"],
        "inN": ["ref_is_N"],
        "inN2": ["ref_is_N"],
        "last": ["ok"],
        "outside": ["outside_contig"],
    }
    return recs, status


@pytest.fixture(scope="module")
def main_run(tmp_path_factory, chr22_slice):
    """One CLI run over every kind of record, PS model, bgzip FASTA, bgzipped VCF output."""
    d = tmp_path_factory.mktemp("main")
    recs, status = main_records(chr22_slice.seq)
    vcf = write_vcf(d / "in.vcf", recs)
    out = d / "out.vcf.gz"
    proc = run_cli(vcf, "-f", chr22_slice.fa_gz, "-m", MODELS["ps"], "-o", out, "--window", W)
    assert proc.returncode == 0, proc.stderr
    from cyvcf2 import VCF

    rows = []
    for rec in VCF(str(out)):
        info = dict(rec.INFO)
        rows.append(
            {
                "chrom": rec.CHROM,
                "pos": rec.POS,
                "id": rec.ID,
                "ref": rec.REF,
                "alt": rec.ALT[0] if rec.ALT else ".",
                "info": info,
            }
        )
    return {"dir": d, "vcf": vcf, "out": out, "recs": recs, "status": status, "rows": rows}


def main_scores(main_run) -> dict[tuple, dict]:
    return {
        (r["chrom"], r["pos"], r["ref"].upper(), r["alt"].upper()): {
            s: r["info"].get(f"VEPCLI_{s.upper()}") for s in SCORES
        }
        for r in main_run["rows"]
    }


def test_every_alt_gets_one_row_with_status_and_reason(main_run):
    rows, recs, status = main_run["rows"], main_run["recs"], main_run["status"]
    assert len(rows) == n_alts(recs) == 23
    got: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: r["info"]["VEPCLI_INDEX"]):
        got.setdefault(r["id"], []).append(r["info"]["VEPCLI_STATUS"])
    assert got == status
    for r in rows:
        ok = r["info"]["VEPCLI_STATUS"] == "ok"
        if not ok:  # every unscored allele says why, and carries no score
            assert r["info"].get("VEPCLI_REASON"), r
            assert all(f"VEPCLI_{s.upper()}" not in r["info"] for s in SCORES), r
        elif r["id"] in ("ins", "del"):  # scored by embeddings only; the reason says why llr is empty
            assert "VEPCLI_LLR" not in r["info"] and "SNVs" in r["info"]["VEPCLI_REASON"]
            assert r["info"]["VEPCLI_EMB_L2"] > 0
        else:
            assert all(isinstance(r["info"].get(f"VEPCLI_{s.upper()}"), float) for s in SCORES), r
    # the index runs over the input ALTs in input order
    assert sorted(r["info"]["VEPCLI_INDEX"] for r in rows) == list(range(len(rows)))
    mismatch = next(r for r in rows if r["id"] == "mismatch")
    assert "22:600" in mismatch["info"]["VEPCLI_REASON"]


def test_chr_prefix_is_scored_like_the_fasta_name(main_run):
    by_id = {r["id"]: r for r in main_run["rows"]}
    a, b = by_id["snv"], by_id["chrpfx"]
    assert b["chrom"] == "chr22" and b["info"]["VEPCLI_STATUS"] == "ok"
    for s in SCORES:
        key = f"VEPCLI_{s.upper()}"
        assert b["info"][key] == a["info"][key]


def test_vcf_header_and_tabix(main_run):
    import pysam
    from cyvcf2 import VCF

    out = main_run["out"]
    raw = out.read_bytes()
    assert raw[:4] == b"\x1f\x8b\x08\x04" and raw[12:14] == b"BC"  # BGZF, not plain gzip
    assert Path(str(out) + ".tbi").is_file()
    with gzip.open(out, "rt") as fh:
        header = [line for line in fh if line.startswith("##")]
    info_ids = [line.split("ID=")[1].split(",")[0] for line in header if line.startswith("##INFO=")]
    assert len(info_ids) == len(set(info_ids))  # one ##INFO per field
    used = {k for r in main_run["rows"] for k in r["info"]}
    assert used <= set(info_ids)
    assert {"VEPCLI_STATUS", "VEPCLI_REASON", "VEPCLI_LLR", "VEPCLI_EMB_L2", "VEPCLI_EMB_COS"} <= set(info_ids)
    for prefix in ("##vepcli_model=", "##vepcli_window=", "##vepcli_version=", "##vepcli_command="):
        assert sum(line.startswith(prefix) for line in header) == 1, prefix
    assert f"##vepcli_window={W}\n" in header and f"##vepcli_version={__version__}\n" in header
    assert "caduceus-ps-tiny" in next(line for line in header if line.startswith("##vepcli_model="))
    vcf = VCF(str(out))
    assert vcf.get_header_type("VEPCLI_LLR")["Type"] == "Float"

    # region queries through the index: what is expected comes from our own record list
    recs = main_run["recs"]
    want = sum(len(a.split(",")) for c, p, _, _, a in recs if c == "22" and 1 <= p <= 1000)
    with pysam.TabixFile(str(out)) as tbx:
        got = list(tbx.fetch("22", 0, 1000))
        assert len(got) == want
        assert [line.split("\t")[2] for line in tbx.fetch("chr22")] == ["chrpfx"]
    got = [v.POS for v in vcf("22:3500-4500")]
    assert got == [3586] + [4000] * 4  # the deletion, then the four alleles at 4000


def test_output_file_mode_follows_umask(main_run):
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(main_run["out"].stat().st_mode) == 0o666 & ~umask


# ------------------------------------------------------------------ hand-computed scores


HAND = [  # (pos, ref, alt) already trimmed; pos 1 and 99500 give N-padded windows
    (1, None, None),
    (501, None, None),
    (1000, "CA", "GC"),
    (1382, None, None),
    (2000, "C", "CTTA"),
    (3586, "AGAG", "A"),
    (4000, None, None),
    (99500, None, None),
]


@pytest.mark.parametrize(
    "model_name,strand_average,pool", [("ps", True, 100), ("ph", True, 1536), ("ps", False, 1536), ("ph", False, 100)]
)
def test_scores_equal_hand_computed(tmp_path, chr22_slice, model_name, strand_average, pool):
    seq = chr22_slice.seq
    alleles = []
    for pos, ref, alt in HAND:
        if ref is None:
            ref, alt = seq[pos - 1].upper(), other(seq[pos - 1])
        assert seq[pos - 1 : pos - 1 + len(ref)].upper() == ref
        alleles.append((pos, ref, alt))
    alleles.append((4000, seq[3999].upper(), other(other(seq[3999]))))  # second ALT at a shared site
    vcf = write_vcf(tmp_path / "v.vcf", [("22", p, f"v{k}", r, a) for k, (p, r, a) in enumerate(alleles)])
    out = score_lib(vcf, tmp_path / "s.parquet", model_name, pool=pool, strand_average=strand_average)
    got = pd.read_parquet(out)
    assert list(got["status"]) == ["ok"] * len(alleles)
    model = load_model(MODELS[model_name]).eval()
    for (pos, ref, alt), (_, row) in zip(alleles, got.iterrows(), strict=True):
        exp = expected_scores(model, seq, pos, ref, alt, W, pool, strand_average)
        assert row["emb_l2"] == pytest.approx(exp["emb_l2"], rel=2e-5), (pos, ref, alt)
        assert row["emb_cos"] == pytest.approx(exp["emb_cos"], rel=1e-4), (pos, ref, alt)
        if exp["llr"] is None:
            assert pd.isna(row["llr"])
        else:
            assert row["llr"] == pytest.approx(exp["llr"], abs=1e-5), (pos, ref, alt)


def test_strand_average_changes_the_numbers(tmp_path, chr22_slice):
    """Guard against the flag being ignored: Ph llr and PS embeddings differ with and without it."""
    seq = chr22_slice.seq
    vcf = write_vcf(tmp_path / "v.vcf", [("22", 501, "a", seq[500].upper(), other(seq[500]))])
    for model_name, score in (("ph", "llr"), ("ps", "emb_l2")):
        both = read_scores(score_lib(vcf, tmp_path / f"{model_name}1.tsv", model_name, scores=(score,)))
        fwd = read_scores(
            score_lib(vcf, tmp_path / f"{model_name}2.tsv", model_name, scores=(score,), strand_average=False)
        )
        assert abs(both[score][0] - fwd[score][0]) > 1e-4


def test_lower_case_reference_scores_like_upper_case(tmp_path, chr22_slice):
    seq = chr22_slice.seq
    upper = tmp_path / "upper.fa"
    upper.write_text(
        "".join(
            line if line.startswith(">") else line.upper()
            for line in chr22_slice.fa.read_text().splitlines(keepends=True)
        )
    )
    recs = [
        ("22", 1382, "a", seq[1381], other(seq[1381])),
        ("22", 1384, "b", seq[1383:1385], "CC"),
        ("22", 99500, "c", seq[99499], other(seq[99499])),
    ]
    assert all(r[3].islower() for r in recs) and recs[1][3].upper() != "CC"
    vcf = write_vcf(tmp_path / "v.vcf", recs)
    a = pd.read_parquet(score_lib(vcf, tmp_path / "lower.parquet", "ph", fasta=chr22_slice.fa))
    b = pd.read_parquet(score_lib(vcf, tmp_path / "upper.parquet", "ph", fasta=upper))
    assert list(a["status"]) == list(b["status"]) == ["ok"] * 3
    for s in SCORES:
        assert a[s].tolist() == pytest.approx(b[s].tolist(), abs=1e-6)


def test_too_many_n_is_reported_and_the_edge_is_exactly_half(tmp_path, chr22_slice):
    seq, w = chr22_slice.seq, 1024
    frac = lambda p: ref_win(seq, p, w).count("N") / w  # noqa: E731
    assert frac(46450) > 0.5 and frac(1) == 0.5 and seq[46449] != "N"
    vcf = write_vcf(
        tmp_path / "v.vcf",
        [("22", 46450, "gap", seq[46449], other(seq[46449])), ("22", 1, "edge", seq[0], other(seq[0]))],
    )
    got = read_scores(score_lib(vcf, tmp_path / "s.tsv", "ph", window=w, scores=("llr",)))
    assert list(got["status"]) == ["too_many_N", "ok"]
    assert "N" in got["reason"][0] and pd.isna(got["llr"][0]) and not pd.isna(got["llr"][1])


def test_mnv_longer_than_half_the_window(tmp_path, chr22_slice):
    seq, w = chr22_slice.seq, 8
    ref = seq[500:506].upper()
    alt = "".join(other(b) for b in ref)
    vcf = write_vcf(tmp_path / "v.vcf", [("22", 501, "long_mnv", ref, alt), ("22", 600, "snv", seq[599], "A")])
    got = read_scores(score_lib(vcf, tmp_path / "s.tsv", "ph", window=w))
    assert list(got["status"]) == ["ok", "ok"] and not pd.isna(got["emb_l2"][0]) and not pd.isna(got["llr"][1])
    if pd.isna(got["llr"][0]):  # left empty, with a reason ...
        assert got["reason"][0]
    else:  # ... or summed over the changed positions inside the window only (docs/input-rules.md section 7)
        c = w // 2
        masked = ids_of(ref_win(seq, 501, w))
        masked[c:] = MASK_ID
        lp = per_base_logp(load_model(MODELS["ph"]).eval(), masked, True)
        want = sum(float(lp[c + k, TOKEN[alt[k]]] - lp[c + k, TOKEN[ref[k]]]) for k in range(w - c))
        assert got["llr"][0] == pytest.approx(want, abs=1e-5)


# ------------------------------------------------------------------ invariance: batch size, sharing


def test_batch_size_and_ref_sharing_do_not_change_scores(tmp_path, chr22_slice, monkeypatch):
    seq = chr22_slice.seq
    R = lambda p: seq[p - 1].upper()  # noqa: E731
    recs = [
        ("22", 4000, "m", R(4000), ",".join(b for b in "ACGT" if b != R(4000))),
        ("22", 501, "s", R(501), ",".join(b for b in "ACGT" if b != R(501))[:3]),
        ("22", 1000, "mnv", seq[999:1001].upper(), "GC"),
        ("22", 1000, "snv", R(1000), other(R(1000))),
        ("22", 2000, "ins", R(2000), R(2000) + "TTA"),
        ("22", 3586, "del", seq[3585:3589].upper(), R(3586)),
    ]
    vcf = write_vcf(tmp_path / "v.vcf", recs)
    n_requests = []
    real_run = Engine.run
    monkeypatch.setattr(
        Engine,
        "run",
        lambda self, reqs, progress=None: (n_requests.append(len(reqs)), real_run(self, reqs, progress))[1],
    )
    runs = {}
    for name, kw in {
        "b1": dict(batch_size=1),
        "b7": dict(batch_size=7),
        "b7_noshare": dict(batch_size=7, share_ref=False),
    }.items():
        runs[name] = pd.read_parquet(score_lib(vcf, tmp_path / f"{name}.parquet", "ps", **kw))
    # sharing is exercised: 3 + 2 ALTs at two sites, an MNV and an SNV with one ref window
    assert n_requests[0] == n_requests[1] < n_requests[2]
    base = runs["b1"]
    assert (base["status"] == "ok").all() and len(base) == n_alts(recs) == 9
    for name in ("b7", "b7_noshare"):
        for s in SCORES:
            assert runs[name][s].tolist() == pytest.approx(base[s].tolist(), abs=1e-5, nan_ok=True), (name, s)


# ------------------------------------------------------------------ tables


def table_frame(seq: str) -> pd.DataFrame:
    R = lambda p: seq[p - 1].upper()  # noqa: E731
    return pd.DataFrame(
        {
            "chrom": ["22", "chr22", "22", "chr5"],
            "pos": [501, 4000, 2000, 100],
            "id": ["t1", "t2", "t3", "t4"],
            "ref": [R(501), R(4000), R(2000), "A"],
            "alt": [other(R(501)), ",".join(b for b in "ACGT" if b != R(4000)), R(2000) + "TTA", "C"],
            "gene": ["G1", "G2", "G3", "G4"],
            "count": [7, 8, 9, 10],
        }
    )


def check_against_main(got: pd.DataFrame, main_run) -> None:
    """Table rows score like the same alleles in the main VCF run (VCF keeps 6 significant digits)."""
    ref_scores = main_scores(main_run)
    for _, row in got.iterrows():
        if row["status"] != "ok":
            continue
        key = ("22" if row["chrom"] == "chr22" else row["chrom"], row["pos"], row["ref"], row["alt"])
        want = ref_scores[key]
        for s in SCORES:
            if want[s] is None:
                assert pd.isna(row[s])
            else:
                assert row[s] == pytest.approx(want[s], rel=2e-5), (key, s)


def test_tsv_table_in_tsv_out(tmp_path, chr22_slice, main_run):
    frame = table_frame(chr22_slice.seq)
    path = tmp_path / "in.tsv"
    frame.to_csv(path, sep="\t", index=False)
    out = score_lib(path, tmp_path / "out.tsv", "ps")
    text = out.read_text()
    assert text.startswith("##vepcli_version=") and f"##vepcli_window={W}\n" in text
    got = read_scores(out)
    for col in ("chrom", "pos", "id", "ref", "alt", "status", "reason", *SCORES, "gene", "count"):
        assert col in got.columns, col
    assert len(got) == 1 + 3 + 1 + 1  # one row per ALT
    assert list(got["status"]) == ["ok"] * 5 + ["contig_missing"]
    assert list(got["id"]) == ["t1", "t2", "t2", "t2", "t3", "t4"]
    assert list(got["gene"]) == ["G1", "G2", "G2", "G2", "G3", "G4"]
    assert list(got["count"]) == [7, 8, 8, 8, 9, 10]
    assert list(got["chrom"]) == ["22", "chr22", "chr22", "chr22", "22", "chr5"]
    assert got["reason"][5] and got["reason"][0] == ""
    check_against_main(got, main_run)


def test_lrb_csv_and_parquet_tables_to_parquet(tmp_path, chr22_slice, main_run):
    frame = table_frame(chr22_slice.seq)
    lrb = frame.drop(columns=["id"]).rename(
        columns={"chrom": "chromosome", "pos": "position", "gene": "tissue", "count": "label"}
    )
    lrb.to_csv(tmp_path / "lrb.csv", index=False)
    frame.to_parquet(tmp_path / "in.parquet", index=False)
    a = read_scores(score_lib(tmp_path / "lrb.csv", tmp_path / "lrb_out.parquet", "ps"))
    b = read_scores(score_lib(tmp_path / "in.parquet", tmp_path / "pq_out.parquet", "ps"))
    assert list(a["id"]) == ["."] * 6 and list(b["id"]) == ["t1", "t2", "t2", "t2", "t3", "t4"]
    assert list(a["pos"]) == list(b["pos"]) == [501, 4000, 4000, 4000, 2000, 100]
    assert list(a["label"]) == [7, 8, 8, 8, 9, 10] and str(a["label"].dtype).startswith("int")
    assert list(a["tissue"]) == list(b["gene"]) == ["G1", "G2", "G2", "G2", "G3", "G4"]
    assert str(b["count"].dtype).startswith("int")
    for got in (a, b):
        assert list(got["status"]) == ["ok"] * 5 + ["contig_missing"]
        check_against_main(got, main_run)
    for s in SCORES:  # both readers give the same numbers
        assert a[s].tolist() == pytest.approx(b[s].tolist(), abs=1e-6, nan_ok=True)


# ------------------------------------------------------------------ user errors: nothing left behind


@pytest.mark.slow  # a subprocess
def test_ref_mismatch_error_exits_1_and_leaves_nothing(tmp_path, chr22_slice):
    seq = chr22_slice.seq
    # 22 sites x 3 ALTs = 66 alleles: the first block of 64 is scored and stored before the bad line
    recs = [
        ("22", p, f"s{p}", seq[p - 1].upper(), ",".join(b for b in "ACGT" if b != seq[p - 1].upper()))
        for p in range(100, 100 + 5 * 22, 5)
    ]
    assert "N" not in seq[99:210].upper() and n_alts(recs) > BLOCK
    recs.append(("22", 600, "bad", other(seq[599]), seq[599].upper()))
    vcf = write_vcf(tmp_path / "in.vcf", recs)
    out = tmp_path / "out.vcf.gz"
    proc = run_cli(
        vcf,
        "-f",
        chr22_slice.fa,
        "-m",
        MODELS["ph"],
        "-o",
        out,
        "--window",
        W,
        "--scores",
        "llr",
        "--ref-mismatch",
        "error",
    )
    assert proc.returncode == 1
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert f"line {N_HEADER_LINES + len(recs)}" in lines[0] and "22:600" in lines[0]
    assert leftovers(tmp_path, {"in.vcf"}) == []


@pytest.mark.slow  # a subprocess
def test_malformed_line_exits_1_and_leaves_nothing(tmp_path, chr22_slice):
    seq = chr22_slice.seq
    recs = [("22", p, ".", seq[p - 1].upper(), other(seq[p - 1])) for p in (100, 200, 300, 400)]
    vcf = write_vcf(tmp_path / "in.vcf", recs)
    lines = vcf.read_text().splitlines(keepends=True)
    lines[N_HEADER_LINES + 2] = "22\t300\t.\tA\n"  # the third record: 4 columns
    vcf.write_text("".join(lines))
    proc = run_cli(vcf, "-f", chr22_slice.fa, "-m", MODELS["ph"], "-o", tmp_path / "out.tsv", "--window", W)
    assert proc.returncode == 1
    msg = error_lines(proc)
    assert len(msg) == 1, proc.stderr
    assert f"line {N_HEADER_LINES + 3}" in msg[0] and "in.vcf" in msg[0]
    assert leftovers(tmp_path, {"in.vcf"}) == []


# ------------------------------------------------------------------ resume


@pytest.mark.slow  # a subprocess
def test_killed_run_resumes_to_the_same_bytes(tmp_path, chr22_slice):
    seq = chr22_slice.seq
    sites = range(100, 100 + 7 * 50, 7)  # 50 sites x 3 ALTs = 150 alleles = 3 blocks
    assert "N" not in seq[99:460].upper()
    recs = [
        ("22", p, f"s{p}", seq[p - 1].upper(), ",".join(b for b in "ACGT" if b != seq[p - 1].upper())) for p in sites
    ]
    assert 2 * BLOCK < n_alts(recs) <= 3 * BLOCK
    vcf = write_vcf(tmp_path / "in.vcf", recs)
    args = [vcf, "-f", chr22_slice.fa, "-m", MODELS["ph"], "--window", W, "--scores", "llr"]
    out, partial = tmp_path / "out.vcf", tmp_path / "out.vcf.partial"

    # killed (SIGKILL, no chance to clean up) right after its first block is stored
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_BLOCK, *map(str, (vcf, chr22_slice.fa, out, MODELS["ph"], W))],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists() and partial.is_dir()
    stored = (partial / "rows.jsonl").read_bytes()
    marks = [json.loads(line) for line in stored.splitlines() if b"block_end" in line]
    assert marks == [{"block_end": 0}] and stored.count(b"\n") == BLOCK + 1

    refused = run_cli(*args[:-4], "--window", 512, "--scores", "llr", "-o", out, "--resume")
    assert refused.returncode == 1
    assert len(error_lines(refused)) == 1 and "resume" in refused.stderr, refused.stderr
    assert (partial / "rows.jsonl").read_bytes() == stored and not out.exists()  # the store survives

    resumed = run_cli(*args, "-o", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert out.is_file() and not partial.exists()

    whole = tmp_path / "whole.vcf"  # uninterrupted, in-process (same settings; only the command line differs)
    score_lib(vcf, whole, "ph", fasta=chr22_slice.fa, scores=("llr",))

    def body(path: Path) -> bytes:
        return b"".join(
            line for line in path.read_bytes().splitlines(keepends=True) if not line.startswith(b"##vepcli_command=")
        )

    assert body(out) == body(whole)
    assert body(out).count(b"VEPCLI_LLR=") == n_alts(recs)
    assert leftovers(tmp_path, {"in.vcf"}) == ["out.vcf", "whole.vcf"]


def test_resume_reuses_stored_blocks(tmp_path, chr22_slice, monkeypatch):
    """In-process: stop after block 0 (Ctrl-C), tamper with a stored score, resume: the stored row is kept,
    the rest is computed; without --resume the store is discarded."""
    import vepcli.pipeline as pipeline

    seq = chr22_slice.seq
    recs = [("22", p, f"s{p}", seq[p - 1].upper(), other(seq[p - 1])) for p in range(100, 130, 3)]  # 10
    vcf = write_vcf(tmp_path / "in.vcf", recs)
    out, partial = tmp_path / "out.tsv", tmp_path / "out.tsv.partial"
    monkeypatch.setattr(pipeline, "BLOCK", 4)
    with pytest.raises(KeyboardInterrupt):
        score_lib(vcf, out, "ph", scores=("llr",), progress=interrupt)
    assert not out.exists()
    rows_path = partial / "rows.jsonl"
    first = json.loads(rows_path.read_text().splitlines()[0])
    true_llr = first["llr"]
    first["llr"] = 123.5
    lines = rows_path.read_text().splitlines(keepends=True)
    rows_path.write_text(json.dumps(first) + "\n" + "".join(lines[1:]) + '{"index": 99, "chro')  # torn write
    got = read_scores(score_lib(vcf, out, "ph", scores=("llr",), resume=True))
    assert len(got) == 10 and got["llr"][0] == 123.5 and not partial.exists()
    fresh = read_scores(score_lib(vcf, tmp_path / "fresh.tsv", "ph", scores=("llr",)))
    assert got["llr"][1:].tolist() == fresh["llr"][1:].tolist()
    assert fresh["llr"][0] == pytest.approx(true_llr, rel=1e-5)


def test_resume_refused_in_process_with_other_settings(tmp_path, chr22_slice, monkeypatch):
    import vepcli.pipeline as pipeline

    seq = chr22_slice.seq
    vcf = write_vcf(
        tmp_path / "in.vcf", [("22", p, ".", seq[p - 1].upper(), other(seq[p - 1])) for p in (100, 110, 120)]
    )
    monkeypatch.setattr(pipeline, "BLOCK", 1)
    with pytest.raises(KeyboardInterrupt):
        score_lib(vcf, tmp_path / "o.tsv", "ph", scores=("llr",), progress=interrupt)
    with pytest.raises(UserError, match="without --resume"):
        score_lib(vcf, tmp_path / "o.tsv", "ph", scores=("llr",), pool=64, resume=True)
    # batch size is not part of a run's identity: resuming with another one is accepted
    got = read_scores(score_lib(vcf, tmp_path / "o.tsv", "ph", scores=("llr",), batch_size=2, resume=True))
    assert list(got["status"]) == ["ok"] * 3
