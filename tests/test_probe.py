"""`vepcli probe`: held-out-region learning on real DNA, a shuffled-label control, skops round trip and trust,
model/window refusal, bucketed metrics and plots, the Long Range Benchmark's column names.

The labelled set comes from tests/data/make_probe_set.py: 400 SNVs on the real chr22 slice, label 1 when the
SNV sits in soft-masked repeat sequence (>= 64 bp inside the repeat), 0 when it sits in unmasked sequence
(>= 64 bp from any repeat); the label is a property of the local sequence, so it is learnable from pooled
embeddings even of the random-weight fixture model. Embeddings: fixture Caduceus-PS, window 256, pool 256.
Held-out evaluation: the slice is cut into three contiguous thirds, each held out in turn.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from vepcli.cli import cli
from vepcli.errors import UserError
from vepcli.features import label_classes
from vepcli.probe import (
    bucket_labels,
    evaluate,
    load_probe,
    make_splits,
    parse_edges,
    read_embeddings,
    save_probe,
    train_probe,
)

torch.set_num_threads(1)

DATA = Path(__file__).resolve().parent / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "caduceus-hf"  # vendored, see its README.md
MODELS = {"ps": FIXTURES / "caduceus-ps-tiny", "ph": FIXTURES / "caduceus-ph-tiny"}
W, POOL = 256, 256


def _make_probe_set():
    spec = importlib.util.spec_from_file_location("make_probe_set", DATA / "make_probe_set.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def embed(table: Path, out: Path, model: str = "ps", window: int = W, pool: int = POOL) -> Path:
    run(
        "embed",
        table,
        "-f",
        DATA / "chr22_slice.fa",
        "-m",
        MODELS[model],
        "-o",
        out,
        "--window",
        window,
        "--pool",
        pool,
        "--threads",
        1,
        "-q",
    )
    return out


def subset(src: Path, dst: Path, keep: np.ndarray, **columns) -> Path:
    """Rows `keep` of an embeddings parquet, schema metadata kept; extra columns added."""
    table = pq.read_table(src).filter(keep)
    for name, values in columns.items():
        table = table.append_column(name, [values[keep]])
    pq.write_table(table.replace_schema_metadata(pq.read_schema(src).metadata), dst)
    return dst


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory):
    """Embeddings of the labelled set in three contiguous thirds of the slice, and a shuffled label.

    `train`/`test`: thirds 1-2 and third 3 (for the command-line tests). The shuffled label is one
    permutation over all rows, so it is unrelated to sequence in training and in evaluation alike."""
    d = tmp_path_factory.mktemp("probe")
    frame = _make_probe_set().build(DATA / "chr22_slice.fa", n=400, seed=0, guard=512, margin=64)
    assert list(frame.columns[:5]) == ["chromosome", "position", "ref", "alt", "label"]  # LRB names
    frame.to_csv(d / "set.tsv", sep="\t", index=False)
    emb = embed(d / "set.tsv", d / "emb.parquet")
    table = pq.read_table(emb)
    pos = table.column("pos").to_numpy()
    third = np.argsort(np.argsort(pos, kind="stable"), kind="stable") * 3 // len(pos)
    shuffled = np.random.default_rng(12345).permutation(table.column("label").to_numpy())
    parts = {}
    for k in range(3):
        parts[k] = (
            subset(emb, d / f"train{k}.parquet", third != k, shuffled=shuffled),
            subset(emb, d / f"test{k}.parquet", third == k, shuffled=shuffled),
        )
    return {"dir": d, "all": emb, "parts": parts, "train": parts[2][0], "test": parts[2][1]}


@pytest.fixture(scope="module")
def svm_probe(probe_data):
    out = probe_data["dir"] / "svm.skops"
    result = run("probe", "train", probe_data["train"], "--label", "label", "-o", out, "--threads", 1)
    return out, result


def eval_auroc(probe_file: Path, emb: Path, *extra: str) -> tuple[float, str]:
    result = run("probe", "eval", probe_file, emb, "--bootstrap", 0, "--threads", 1, *extra)
    first = result.stdout.splitlines()[1].split()
    assert first[0] == "all"
    return float(first[4]), result.stdout


# ------------------------------------------------------------------ learning, and the control


def test_probe_learns_repeats_on_held_out_regions(probe_data, svm_probe):
    """Each third of the slice is held out in turn; C is chosen by block CV inside the other two thirds."""
    out, result = svm_probe
    cv = load_probe(out).meta["cv"]
    assert cv["method"] == "genomic_blocks"  # one chromosome: contiguous blocks are held out
    assert cv["n_folds"] == 5 and cv["buffer_bp"] == W
    assert "genomic_blocks" in result.stderr and "block 1: 22:" in result.stderr
    cli_auroc, _ = eval_auroc(out, probe_data["test"])
    held_out, cv_means = [], []
    for train, test in probe_data["parts"].values():
        probe = train_probe(read_embeddings(train), "label")
        cv_means.append(probe.meta["cv"]["mean_auroc"])
        held_out.append(evaluate(probe, read_embeddings(test), "label", bootstrap=0).table["auroc"].iloc[0])
    assert cli_auroc == pytest.approx(held_out[2], abs=5e-4)
    assert min(held_out) >= 0.6 and np.mean(held_out) >= 0.75, held_out
    assert np.mean(cv_means) >= 0.7, cv_means  # the CV inside 267 rows is noisier than the held-out mean


def test_shuffled_labels_stay_at_chance(probe_data):
    out = probe_data["dir"] / "shuffled.skops"
    run("probe", "train", probe_data["train"], "--label", "shuffled", "-o", out, "--threads", 1, "-q")
    auroc, _ = eval_auroc(out, probe_data["test"], "--label", "shuffled")
    cv_means, held_out = [], []
    for train, test in probe_data["parts"].values():
        probe = train_probe(read_embeddings(train), "shuffled")
        cv_means.append(probe.meta["cv"]["mean_auroc"])
        held_out.append(evaluate(probe, read_embeddings(test), "shuffled", bootstrap=0).table["auroc"].iloc[0])
    assert auroc == pytest.approx(held_out[2], abs=5e-4)
    for value in cv_means + held_out:
        assert 0.3 <= value <= 0.7, (cv_means, held_out)
    assert 0.4 <= np.mean(held_out) <= 0.6 and 0.4 <= np.mean(cv_means) <= 0.6, (cv_means, held_out)


def test_held_out_folds_never_share_a_block_or_nearby_rows(probe_data):
    emb = read_embeddings(probe_data["train"])
    splits = make_splits(emb.table, 5, buffer_bp=W)
    pos = emb.table["pos"].to_numpy()
    for train, test in splits.folds:
        assert not set(splits.groups[train]) & set(splits.groups[test])
        assert np.min(np.abs(pos[train][:, None] - pos[test][None, :])) >= W
        assert pos[test].max() - pos[test].min() < pos.max() - pos.min()  # one contiguous block


# ------------------------------------------------------------------ save, load, trust, identity


def test_skops_round_trip_gives_identical_predictions(probe_data, svm_probe):
    emb = read_embeddings(probe_data["test"])
    train = read_embeddings(probe_data["train"])
    fresh = train_probe(train, "label")  # same data and defaults as the saved one
    loaded = load_probe(svm_probe[0])
    p_fresh = fresh.predict_proba(emb.ref, emb.alt)
    p_loaded = loaded.predict_proba(emb.ref, emb.alt)
    assert p_loaded.shape == (len(emb.ref),)
    assert np.array_equal(p_fresh, p_loaded)
    assert np.array_equal(fresh.decision(emb.ref, emb.alt), loaded.decision(emb.ref, emb.alt))
    again = load_probe(save_probe(loaded, probe_data["dir"] / "again.skops"))
    assert np.array_equal(again.predict_proba(emb.ref, emb.alt), p_loaded)
    assert ((p_loaded > 0) & (p_loaded < 1)).all()
    # the calibrated probability ranks rows like the decision score, and the positive class gets the larger
    y = emb.table["label"].to_numpy()
    assert p_loaded[y == 1].mean() > p_loaded[y == 0].mean()


def test_metadata_records_identity_layout_classes_and_cv(probe_data, svm_probe):
    meta = load_probe(svm_probe[0]).meta
    header = json.loads(pq.read_schema(probe_data["train"]).metadata[b"vepcli"])
    emb_line = next(h for h in header if h.startswith("##vepcli_embedding="))
    assert f"config_hash={meta['embedding']['config_hash']}" in emb_line
    assert meta["embedding"]["window"] == W and meta["embedding"]["pool"] == POOL
    assert meta["embedding"]["d_model"] == 24 and meta["embedding"]["weights_sha256"] != "unknown"
    assert meta["features"]["layout"] == "ref-alt" and meta["features"]["n_features"] == 48
    assert meta["features"]["blocks"] == [["ref", 0, 24], ["alt", 24, 48]]
    assert meta["label"]["classes"] == ["0", "1"]
    assert len(meta["cv"]["grid"]) == 6 and meta["cv"]["best"]["C"] in (1.0, 5.0, 10.0)
    info = json.loads(run("probe", "info", svm_probe[0]).stdout)
    assert info["cv"]["mean_auroc"] == meta["cv"]["mean_auroc"]


def test_probe_from_another_model_or_window_is_refused(probe_data, svm_probe, tmp_path):
    probe = load_probe(svm_probe[0])
    ident = probe.identity
    probe.check_compatible(ident.config_hash, W, POOL, weights_sha256=ident.weights_sha256, strand_average=True)
    cases = [
        ((ident.config_hash, 512, POOL), {}, "window 512"),
        ((ident.config_hash, W, 128), {}, "pool 128"),
        (("0123456789abcdef", W, POOL), {}, "model config 0123456789abcdef"),
        ((ident.config_hash, W, POOL), {"weights_sha256": "f" * 64}, "model weights"),
        ((ident.config_hash, W, POOL), {"strand_average": False}, "strand averaging"),
    ]
    for args, kwargs, words in cases:
        with pytest.raises(UserError, match=words) as err:
            probe.check_compatible(*args, **kwargs)
        assert "\n" not in str(err.value)
    # end to end: embeddings of the Ph fixture (another config) are refused by eval, in one line
    rows = pd.read_csv(probe_data["dir"] / "set.tsv", sep="\t").head(6)
    rows.to_csv(tmp_path / "few.tsv", sep="\t", index=False)
    other = embed(tmp_path / "few.tsv", tmp_path / "ph.npz", model="ph")  # .npz: the other embed format
    emb = read_embeddings(other)
    assert emb.ref.shape == (6, 24) and emb.identity.config_hash != ident.config_hash
    assert list(emb.table["label"]) == list(rows["label"])
    result = run("probe", "eval", svm_probe[0], other, ok=False)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vepcli: error: probe ") and "model config" in lines[0]


def test_untrusted_or_foreign_files_are_not_loaded(tmp_path):
    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    evil = tmp_path / "evil.skops"
    sio.dump(
        {
            "format": "vepcli-probe",
            "meta_json": "{}",
            "pipeline": Pipeline([("f", FunctionTransformer(func=_not_a_probe_function))]),
        },
        evil,
    )
    assert sio.get_untrusted_types(file=evil)  # skops itself would not trust it either
    with pytest.raises(UserError, match="holds types a vepcli probe never contains"):
        load_probe(evil)
    pickle_like = tmp_path / "probe.pkl"
    pickle_like.write_bytes(b"\x80\x04\x95 not a zip")
    with pytest.raises(UserError, match="not a skops probe file"):
        load_probe(pickle_like)
    plain = tmp_path / "plain.skops"
    sio.dump({"format": "something else", "pipeline": None}, plain)
    with pytest.raises(UserError, match="not a vepcli probe"):
        load_probe(plain)


def _not_a_probe_function(x):
    return x


# ------------------------------------------------------------------ evaluation output


def test_eval_table_per_bucket_and_pngs(probe_data, svm_probe):
    plots = probe_data["dir"] / "heldout"
    tsv = probe_data["dir"] / "heldout.tsv"
    result = run(
        "probe",
        "eval",
        svm_probe[0],
        probe_data["test"],
        "--bucket-by",
        "distance_to_boundary",
        "--buckets",
        "64,128,256",
        "--plots",
        plots,
        "-o",
        tsv,
        "--threads",
        1,
    )
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["bucket", "n", "n_pos", "pos_rate", "AUROC", "AUROC_95CI", "AUPRC"]
    assert [ln.split()[0] for ln in lines[1:]] == ["all", "64-128", "128-256", ">=256"]
    table = pd.read_csv(tsv, sep="\t")
    assert table["n"].iloc[0] == table["n"].iloc[1:].sum()  # every held-out row is >= 64 bp from a boundary
    assert (table["auroc_lo"] <= table["auroc"]).all() and (table["auroc"] <= table["auroc_hi"]).all()
    for suffix in (".roc.png", ".pr.png"):
        png = Path(f"{plots}{suffix}")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "wrote" in result.stderr


def test_decision_scores_not_hard_labels(probe_data, svm_probe):
    """AUROC from hard labels has one threshold; from scores, the curve has many points."""
    from sklearn.metrics import roc_auc_score

    emb = read_embeddings(probe_data["test"])
    probe = load_probe(svm_probe[0])
    s = probe.decision(emb.ref, emb.alt)
    y = emb.table["label"].to_numpy()
    auroc, _ = eval_auroc(svm_probe[0], probe_data["test"])
    assert auroc == pytest.approx(roc_auc_score(y, s), abs=5e-4)
    assert auroc != pytest.approx(roc_auc_score(y, s > 0), abs=1e-3)


# ------------------------------------------------------------------ other kinds, layouts, covariates


def test_logistic_diff_layout_with_tissue_covariate(probe_data):
    emb = read_embeddings(probe_data["train"])
    probe = train_probe(emb, "label", kind="logistic", layout="ref-alt-diff", covariates=["tissue"])
    meta = probe.meta
    assert meta["features"]["n_features"] == 3 * 24 + 4
    assert meta["features"]["blocks"][2] == ["alt-ref", 48, 72]
    assert meta["covariates"] == {"tissue": ["Adipose", "Lung", "Muscle", "Whole_Blood"]}
    test = read_embeddings(probe_data["test"])
    p = probe.predict_proba(test.ref, test.alt, test.table)
    assert p.shape == (len(test.ref),) and ((p >= 0) & (p <= 1)).all()
    with pytest.raises(UserError, match="needs covariate column"):
        probe.predict_proba(test.ref, test.alt, None)
    unseen = test.table.assign(tissue="Liver")  # a level not seen in training: zeros, still a number
    assert np.isfinite(probe.predict_proba(test.ref, test.alt, unseen)).all()
    nan_row = test.ref.copy()
    nan_row[0] = np.nan  # a row without embeddings gets NaN, the others are unchanged
    q = probe.predict_proba(nan_row, test.alt, test.table)
    assert np.isnan(q[0]) and np.allclose(q[1:], p[1:])
    with pytest.raises(UserError, match=r"shape \(n, 24\)"):
        probe.predict_proba(test.ref[:, :10], test.alt[:, :10], test.table)


def test_splits_by_chromosome_column_or_blocks():
    rng = np.random.default_rng(0)
    n = 60
    table = pd.DataFrame(
        {
            "chrom": np.repeat(["1", "2", "3", "4"], n // 4),
            "pos": rng.integers(1, 10**6, n),
            "fold": np.tile(["a", "b", "c"], n // 3),
        }
    )
    by_chrom = make_splits(table, 5)
    assert by_chrom.method == "chromosome" and len(by_chrom.folds) == 4  # no more folds than chromosomes
    for train, test in by_chrom.folds:
        assert not set(table.chrom[train]) & set(table.chrom[test])
    by_column = make_splits(table, 5, groups_column="fold")
    assert by_column.method == "column:fold" and len(by_column.folds) == 3
    two = table[table.chrom.isin(["1", "2"])].reset_index(drop=True)
    blocks = make_splits(two, 3, buffer_bp=1000)
    assert blocks.method == "genomic_blocks" and len(blocks.folds) == 3
    with pytest.raises(UserError, match="--groups column"):
        make_splits(table, 5, groups_column="nope")


def test_labels_buckets_and_cli_errors(probe_data):
    assert label_classes(pd.Series([0, 1, 1, 0])) == ("0", "1")
    assert label_classes(pd.Series([1.0, 0.0, np.nan])) == ("0", "1")
    assert label_classes(pd.Series([True, False])) == ("False", "True")
    assert label_classes(pd.Series(["benign", "pathogenic"]), positive="pathogenic") == ("benign", "pathogenic")
    with pytest.raises(UserError, match="exactly two classes"):
        label_classes(pd.Series(["a", "b", "c"]))
    assert parse_edges("0,30000,100000") == [0, 30000, 100000]
    with pytest.raises(UserError, match="increasing"):
        parse_edges("5,1")
    names = bucket_labels(np.array([0, 29999, 30000, 10**6, np.nan, -1]), [0, 30000, 100000])
    assert list(names) == ["0-30000", "0-30000", "30000-100000", ">=100000", "", ""]
    result = run(
        "probe", "train", probe_data["train"], "--label", "nope", "-o", probe_data["dir"] / "x.skops", ok=False
    )
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "label column(s) nope" in result.stderr
