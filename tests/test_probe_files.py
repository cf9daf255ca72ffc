"""Hostile probe files and probe outputs (issue 14): a damaged, truncated, empty or foreign `.skops` file is one
line (a UserError), never a traceback and never a pickle run; `probe train -o`/`probe eval -o` go through the
output-path checks and the atomic writer; numeric probe options have ranges. The probes here are trained on
small synthetic embeddings (no model needed); tests/test_fuzz.py mutates them at random."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from vepcli.cli import cli
from vepcli.errors import UserError
from vepcli.probe import EmbeddingIdentity, Embeddings, load_probe, save_probe, train_probe

D = 8


def synthetic_embeddings(n: int = 60, seed: int = 0) -> Embeddings:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {
            "chrom": ["1", "2", "3"] * (n // 3),
            "pos": np.arange(n) * 1000 + 1,
            "label": [0, 1] * (n // 2),
            "tissue": ["a", "b", "c", "a", "b"] * (n // 5),
        }
    )
    ref = rng.normal(size=(n, D)).astype(np.float32)
    alt = (ref + table["label"].to_numpy()[:, None] * 0.7 + rng.normal(size=(n, D)) * 0.3).astype(np.float32)
    return Embeddings(table, ref, alt, EmbeddingIdentity("cafe", 64, 64, D))


def make_probe(path: Path, kind: str = "svm") -> Path:
    emb = synthetic_embeddings()
    return save_probe(train_probe(emb, "label", kind, "ref-alt-diff", ["tissue"], folds=3), path)


def decisions(path: Path) -> np.ndarray:
    emb = synthetic_embeddings(seed=1)
    return load_probe(path).decision(emb.ref, emb.alt, emb.table)


def loads_same_or_refused(path: Path, expected: np.ndarray) -> str:
    """The property every damaged probe file must have: a UserError in one line, or the same numbers."""
    try:
        got = decisions(path)
    except UserError as err:
        assert "\n" not in str(err), str(err)
        return "refused"
    np.testing.assert_array_equal(got, expected)
    return "same"


@pytest.fixture(scope="module")
def probe_file(tmp_path_factory) -> tuple[Path, np.ndarray]:
    path = make_probe(tmp_path_factory.mktemp("probe") / "p.skops")
    return path, decisions(path)


def test_truncated_probe_files(probe_file, tmp_path):
    path, expected = probe_file
    data = path.read_bytes()
    for cut in sorted({0, 1, 4, 22, 100, *range(0, len(data), max(1, len(data) // 40)), len(data) - 1}):
        damaged = tmp_path / "cut.skops"
        damaged.write_bytes(data[:cut])
        assert loads_same_or_refused(damaged, expected) == "refused", cut


def test_flipped_bytes(probe_file, tmp_path):
    path, expected = probe_file
    data = path.read_bytes()
    outcomes = []
    for at in range(0, len(data), max(1, len(data) // 300)):
        damaged = tmp_path / "flip.skops"
        damaged.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])
        outcomes.append(loads_same_or_refused(damaged, expected))
    assert outcomes.count("refused") > len(outcomes) // 2


def test_empty_and_foreign_files(tmp_path):
    for name, content in (("empty.skops", b""), ("text.skops", b"hello\n"), ("zip.skops", None)):
        path = tmp_path / name
        if content is None:
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("readme.txt", "not a probe")
        else:
            path.write_bytes(content)
        with pytest.raises(UserError, match="not a skops probe file"):
            load_probe(path)


def test_zip_with_a_foreign_member(probe_file, tmp_path):
    path, _ = probe_file
    damaged = tmp_path / "foreign.skops"
    damaged.write_bytes(path.read_bytes())
    marker = tmp_path / "ran"
    with zipfile.ZipFile(damaged, "a") as zf:
        zf.writestr("evil.pkl", b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(UserError, match="members skops did not write: evil.pkl"):
        load_probe(damaged)
    assert not marker.exists()


def test_metadata_that_does_not_fit_the_classifier(probe_file, tmp_path):
    """A well-formed skops file whose metadata lies about the features is refused, not used."""
    import json

    import skops.io as sio

    path, _ = probe_file
    obj = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    meta = json.loads(obj["meta_json"])
    for field, value in (
        ("features", {**meta["features"], "n_features": 3}),
        ("kind", "forest"),
        ("covariates", {"tissue": ["a"]}),
        ("embedding", {**meta["embedding"], "d_model": "8"}),
    ):
        bad = tmp_path / f"{field}.skops"
        sio.dump({**obj, "meta_json": json.dumps({**meta, field: value})}, bad)
        with pytest.raises(UserError, match="not a vepcli probe|is damaged"):
            load_probe(bad)


def _cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stderr


def test_damaged_probe_on_the_command_line(probe_file, tmp_path):
    path, _ = probe_file
    cut = tmp_path / "cut.skops"
    cut.write_bytes(path.read_bytes()[:-40])
    emb = tmp_path / "emb.parquet"
    emb.write_bytes(b"x")
    for argv in (["probe", "info", cut], ["probe", "eval", cut, emb, "-q"]):
        code, err = _cli(*argv)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("vepcli: error: "), err
        assert "Traceback" not in err


def test_probe_outputs_are_checked_before_any_work(probe_file, tmp_path):
    path, _ = probe_file
    emb = tmp_path / "emb.parquet"
    emb.write_bytes(b"not read: the outputs are refused first")
    (tmp_path / "folder.tsv").mkdir()
    cases = [
        (["probe", "eval", path, emb, "-o", path], "also one of the inputs"),
        (["probe", "eval", path, emb, "-o", emb], "also one of the inputs"),
        (["probe", "eval", path, emb, "-o", tmp_path / "folder.tsv"], "a folder"),
        (["probe", "eval", path, emb, "-o", tmp_path / "missing" / "t.tsv"], "does not exist"),
        (["probe", "eval", path, emb, "--plots", tmp_path / "emb.parquet.x", "-o", "/dev/null"], "character device"),
        (["probe", "train", emb, "--label", "label", "-o", emb], "also one of the inputs"),
        (["probe", "train", emb, "--label", "label", "-o", "/dev/null"], "character device"),
    ]
    before = {p: p.read_bytes() for p in (path, emb)}
    for argv, match in cases:
        code, err = _cli(*argv)
        assert code == 1 and match in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert {p: p.read_bytes() for p in (path, emb)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.parquet", "folder.tsv"]


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["train", "E", "--label", "label", "-o", "p.skops", "--threads", "0"], "--threads"),
        (["train", "E", "--label", "label", "-o", "p.skops", "--folds", "1"], "--folds"),
        (["train", "E", "--label", "label", "-o", "p.skops", "--seed", "-1"], "--seed"),
        (["eval", "P", "E", "--bootstrap", "-1"], "--bootstrap"),
        (["eval", "P", "E", "--threads", "-2"], "--threads"),
        (["eval", "P", "E", "--seed", str(2**32)], "--seed"),
    ],
)
def test_probe_option_ranges(probe_file, tmp_path, args, match):
    emb = tmp_path / "emb.parquet"
    emb.write_bytes(b"x")
    argv = [str(emb) if a == "E" else str(probe_file[0]) if a == "P" else a for a in args]
    argv = [str(tmp_path / a) if a.endswith(".skops") and a != str(probe_file[0]) else a for a in argv]
    code, err = _cli("probe", *argv)
    assert code == 2 and err.strip().splitlines()[-1].startswith("Error: ") and match in err, err


def test_eval_table_is_written_atomically(tmp_path):
    """The eval table goes through the atomic writer: it replaces an old table only when complete."""
    from vepcli.probe import write_table_tsv

    out = tmp_path / "t.tsv"
    out.write_text("old\n")
    write_table_tsv(pd.DataFrame({"bucket": ["all"], "auroc": [0.5]}), out)
    assert out.read_text() == "bucket\tauroc\nall\t0.5\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.tsv"]
