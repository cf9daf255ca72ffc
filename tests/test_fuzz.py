"""Fuzz suite (issue 14): generated and mutated inputs through the readers and the CLI.

Properties: a reader returns one Variant per ALT or raises UserError with one line; the CLI exits 0
with every ALT accounted for, or 1 with one `vepcli: error:` line, or 2 (usage) ending in an `Error:`
line; never a traceback or a signal, never a leftover `.partial`, never a changed input.

A brief run is part of the normal suite. A longer one: `VEPCLI_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py`
(the CLI and BCF properties run a tenth of that). Inputs that once crashed are kept in
tests/data/fuzz-corpus/ and replayed by test_corpus_replays.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pysam
import pysam.bcftools
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_score import MODELS

from vepcli.cli import cli
from vepcli.errors import UserError
from vepcli.variants import read_variants

DATA = Path(__file__).resolve().parent / "data"
FASTA = DATA / "chr22_slice.fa"
CORPUS = DATA / "fuzz-corpus"
EXAMPLES = int(os.environ.get("VEPCLI_FUZZ_EXAMPLES", "60"))
SLOW = max(3, EXAMPLES // 10)
COMMON = settings(
    deadline=None,
    derandomize=not os.environ.get("VEPCLI_FUZZ_EXAMPLES"),
    suppress_health_check=list(HealthCheck),
    database=None,
)

# ---------------------------------------------------------------- generators

HEADER_LINES = [
    '##INFO=<ID=END,Number=1,Type=Integer,Description="End">',
    '##INFO=<ID=X,Number=1,Type=Integer,Description="x",IDX=2000000000>',
    "##INFO=<ID=Y,Number=Z,Type=Foo>",
    "##INFO=<>",
    "##contig=<>",
    "##contig=<ID=22,length=99500>",
    "##contig=<ID=22,length=5>",
    "##",
    "##foo",
    "##x=a\x00b",
    "##FORMAT=<ID=GT,Number=1,Type=String>",
    "#comment",
    '##ALT=<ID=DEL,Description="del">',
    "##" + "a" * 300,
]
CHROMS = ["22"] * 8 + ["chr22"] * 3 + ["1", "chrM", "", " 22", "22 ", "HLA-A*01:01", "é", "#22", "22\x00"]
ALLELES = ["A", "C", "G", "T"] * 3 + [
    "N",
    "a",
    "AC",
    "ACGTACGT",
    "*",
    ".",
    "<DEL>",
    "<*>",
    "<NON_REF>",
    "N[chr2:321682[",
    "]13:123456]T",
    ".A",
    "A.",
    "",
    "X",
    "A,C",
    "A,,C",
    "A" * 300,
]
POSITIONS = st.one_of(
    st.integers(0, 100_000),
    st.integers(1, 99_500),
    st.integers(1, 99_500),
    st.sampled_from([2**31 - 1, 2**31, 2**32 + 501, 2**35, 2**63 + 5]),
    st.sampled_from(["-5", "abc", "1e3", "", "٣", "0x10", "12 "]),
)


@st.composite
def vcf_texts(draw) -> tuple[str, int | None]:
    """A VCF text and its number of ALTs when every line is well formed (else None). Half of them are
    hostile throughout; the other half are well formed, with odd but legal alleles, so that they score."""
    hostile = draw(st.booleans())

    def pick(bad, good):
        return draw(st.sampled_from(bad if hostile else good))

    lines = []
    if not hostile or draw(st.integers(0, 9)):
        lines.append(
            pick(
                ["##fileformat=VCFv4.2", "##fileformat=VCFv4.0", "##fileformat=VCFv9"],
                ["##fileformat=VCFv4.2", "##fileformat=VCFv4.3", "##fileformat=VCFv4.0"],
            )
        )
    lines += draw(st.lists(st.sampled_from(HEADER_LINES), max_size=4))
    n_cols = pick([8, 8, 10, 5], [8, 10])
    lines.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", "S1"][:n_cols]))
    alts, clean = 0, True
    for _ in range(draw(st.integers(0, 6))):
        chrom = pick(CHROMS, ["22", "chr22", "1", "chrM", "HLA-A*01:01"])
        pos = draw(POSITIONS) if hostile else draw(st.integers(0, 100_000))
        ref = pick(ALLELES[:16] + ["", "X", "A" * 300], ["A", "C", "G", "T", "N", "AC", "acgt", "A" * 300])
        alt = pick(ALLELES, [a for a in ALLELES if a and a not in ("A,,C",)])
        info = draw(st.sampled_from([".", "END=5", "END=99999999999", "END=x", "AC=1,2;AF=.5,.5", "DB"]))
        n = pick([8, 8, 7, 10], [8, 10])
        lines.append("\t".join([chrom, str(pos), ".", ref, alt, ".", ".", info, "GT", "0/1"][:n]))
        ok = (
            n >= 8
            and chrom
            and chrom.strip() == chrom
            and chrom.isprintable()
            and " " not in chrom
            and isinstance(pos, int)
            and pos <= 2**35 - 1
            and ref
            and alt
            and not chrom.startswith("#")
        )
        clean = clean and bool(ok)
        alts += len(alt.split(","))
    if hostile and not draw(st.integers(0, 3)):
        i = draw(st.integers(0, len(lines)))
        lines.insert(i, draw(st.sampled_from(["", "22\t5", "##late", "\ufeff##fileformat=VCFv4.2"])))
        clean = False
    clean = clean and lines[0].startswith("##fileformat=VCF") and n_cols >= 8
    return "\n".join(lines) + "\n", (alts if clean else None)


def mutate(data: bytes, draw) -> bytes:
    for _ in range(draw(st.integers(0, 3))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "dup", "del"]))
        if op == "flip":
            data = data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1 :]
        elif op == "cut":
            data = data[:i]
        elif op == "dup":
            data = data[:i] + data[i : i + 50] + data[i:]
        else:
            data = data[:i] + data[i + draw(st.integers(1, 40)) :]
    return data


def write_compressed(path: Path, text: bytes, how: str) -> Path:
    if how == "gzip":
        path.write_bytes(gzip.compress(text))
    elif how == "bgzip":
        plain = path.with_name(path.name + ".plain")
        plain.write_bytes(text)
        pysam.tabix_compress(str(plain), str(path), force=True)
        plain.unlink()
    else:
        path.write_bytes(text)
    return path


def reads_cleanly(path: Path) -> list | None:
    """read_variants must give Variants or one UserError line; returns the Variants (None on UserError)."""
    try:
        return list(read_variants(path))
    except UserError as err:
        assert "\n" not in str(err) and str(err).strip()
        return None


# ---------------------------------------------------------------- readers


@settings(COMMON, max_examples=EXAMPLES)
@given(vcf_texts(), st.sampled_from(["plain", "gzip", "bgzip"]), st.data())
def test_vcf_reader(tmp_path_factory, generated, how, data):
    text, n_alts = generated
    folder = tmp_path_factory.mktemp("vcf")
    raw = text.encode("utf-8", errors="surrogatepass")
    name = "in.vcf" if how == "plain" else "in.vcf.gz"
    path = write_compressed(folder / name, raw, how)
    if data.draw(st.booleans()):
        path.write_bytes(mutate(path.read_bytes(), data.draw))
        n_alts = None
    got = reads_cleanly(path)
    if n_alts is not None:
        assert got is not None and len(got) == n_alts


COLUMN_NAMES = [
    "chrom",
    "pos",
    "ref",
    "alt",
    "id",
    "CHROM",
    "position",
    "llr",
    "status",
    "index",
    "reason",
    "emb_l2",
    "input_llr",
    "ref_emb",
    "x",
    "x",
    "",
    "a\tb",
    "Unnamed: 0",
]
CELLS = st.one_of(
    st.sampled_from(["22", "chr22", "A", "C", "AC", "<DEL>", "", "1e3", "-1", "a\tb", "x\ny", "N"]),
    st.integers(-5, 2**40),
    st.floats(allow_nan=True),
)


@settings(COMMON, max_examples=EXAMPLES)
@given(
    st.lists(st.sampled_from(COLUMN_NAMES), min_size=1, max_size=7),
    st.lists(st.lists(CELLS, min_size=7, max_size=7), max_size=5),
    st.sampled_from(["tsv", "csv", "tsv.gz", "parquet"]),
    st.data(),
)
def test_table_reader(tmp_path_factory, columns, rows, fmt, data):
    import pandas as pd

    folder = tmp_path_factory.mktemp("table")
    path = folder / f"in.{fmt}"
    frame = pd.DataFrame([r[: len(columns)] for r in rows], columns=range(len(columns)))
    if fmt == "parquet":
        frame.columns = [f"{c}" if columns.count(c) == 1 else f"{c}{i}" for i, c in enumerate(columns)]
        try:
            frame.astype(str).to_parquet(path)
        except Exception:  # noqa: BLE001 - a frame pyarrow will not write is no test input
            return
    else:
        sep = "," if fmt.startswith("csv") else "\t"
        text = sep.join(columns) + "\n" + frame.to_csv(sep=sep, header=False, index=False)
        path = write_compressed(path, text.encode(), "gzip" if fmt.endswith(".gz") else "plain")
        if data.draw(st.booleans()):
            path.write_bytes(mutate(path.read_bytes(), data.draw))
    got = reads_cleanly(path)
    for v in got or []:
        assert not set(v.extra) & {
            "chrom",
            "pos",
            "id",
            "ref",
            "alt",
            "status",
            "reason",
            "index",
            "llr",
            "emb_l2",
            "emb_cos",
            "probe",
            "finetune",
            "ref_emb",
            "alt_emb",
        }


_BCF: dict[str, bytes] = {}


def _bcf(folder: Path) -> bytes:
    """A small BCF, made once per session (bcftools stamps the date in its header)."""
    kind = "u" if folder.name.startswith("bcfu") else "b"
    if kind in _BCF:
        return _BCF[kind]
    vcf = folder / "b.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=22,length=99500>\n"
        '##INFO=<ID=END,Number=1,Type=Integer,Description="End">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
        + "".join(f"22\t{100 + 7 * i}\tv{i}\tA\tC,<DEL>\t.\t.\tEND={120 + 7 * i}\n" for i in range(40))
    )
    bcf = folder / "b.bcf"
    pysam.bcftools.view("-O", kind, "--no-version", "-o", str(bcf), str(vcf), catch_stdout=False)
    _BCF[kind] = bcf.read_bytes()
    return _BCF[kind]


READ_IN_CHILD = textwrap.dedent("""
    import sys
    from vepcli.errors import UserError
    from vepcli.variants import read_variants
    try:
        n = sum(1 for _ in read_variants(sys.argv[1]))
    except UserError as err:
        assert "\\n" not in str(err); print("refused", err)
    else:
        print("read", n)
""")


def _read_in_child(path: Path) -> subprocess.CompletedProcess:
    """BCF goes through htslib: read it in a child process, so that a crash is seen as a signal."""
    return subprocess.run([sys.executable, "-c", READ_IN_CHILD, str(path)], capture_output=True, text=True, timeout=120)


@settings(COMMON, max_examples=SLOW)
@given(st.data())
def test_bcf_reader_never_crashes(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("bcfu" if data.draw(st.booleans()) else "bcf")
    path = folder / "m.bcf"
    raw = _bcf(folder)
    if folder.name.startswith("bcfu"):
        path.write_bytes(mutate(raw, data.draw))
    else:  # mutate the decompressed stream and compress it again: reaches the record decoder
        path.write_bytes(
            write_compressed(folder / "t.gz", mutate(gzip.decompress(raw), data.draw), "bgzip").read_bytes()
        )
    proc = _read_in_child(path)
    if proc.returncode != 0:
        CORPUS.mkdir(exist_ok=True)
        keep = CORPUS / f"crash-{abs(hash(path.read_bytes())) % 10**8}.bcf"
        keep.write_bytes(path.read_bytes())
    assert proc.returncode == 0, f"signal or traceback (kept as {CORPUS}): {proc.stderr[-500:]}"


_PROBE: dict[str, object] = {}


def _probe_bytes(tmp_path_factory) -> tuple[bytes, object]:
    """A small probe file (synthetic embeddings, no model) and its decision scores, made once."""
    if not _PROBE:
        from test_probe_files import decisions, make_probe

        path = make_probe(tmp_path_factory.mktemp("probe") / "p.skops")
        _PROBE.update(data=path.read_bytes(), expected=decisions(path))
    return _PROBE["data"], _PROBE["expected"]


@settings(COMMON, max_examples=EXAMPLES)
@given(st.data())
def test_damaged_probe_files(tmp_path_factory, data):
    """Cut, flipped, inserted and removed bytes in a probe file: a one-line UserError or the same numbers."""
    from test_probe_files import loads_same_or_refused

    raw, expected = _probe_bytes(tmp_path_factory)
    blob = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, max(0, len(blob) - 1)))
        how = data.draw(st.sampled_from(["cut", "flip", "insert", "delete", "zero"]))
        if how == "cut":
            del blob[at:]
        elif how == "flip" and blob:
            blob[at] ^= data.draw(st.integers(1, 255))
        elif how == "insert":
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        elif how == "delete":
            del blob[at : at + data.draw(st.integers(1, 64))]
        elif blob:
            blob[at : at + 8] = bytes(len(blob[at : at + 8]))
    path = tmp_path_factory.mktemp("damaged") / "p.skops"
    path.write_bytes(bytes(blob))
    loads_same_or_refused(path, expected)


def test_corpus_replays():
    """Every input the fuzzers once crashed on is read (or refused) cleanly, in a child process."""
    for path in sorted(CORPUS.glob("*")) if CORPUS.is_dir() else []:
        proc = _read_in_child(path)
        assert proc.returncode == 0, f"{path.name}: {proc.stderr[-500:]}"


# ---------------------------------------------------------------- CLI


OPTION_SETS = [
    [],
    ["--pool", "0"],
    ["--no-strand-average"],
    ["--scores", "llr"],
    ["--shard", "2/3"],
    ["--regions", "22:1-5000"],
    ["--window", "0"],
    ["--pool", "-1"],
    ["--threads", "0"],
    ["--scores", "llr,llr"],
    ["--batch-size", "3"],
    ["--max-indel-len", "2"],
    ["--shard", "0/0"],
    ["--device", "gpu"],
    ["--ref-mismatch", "error"],
    ["--no-share-ref"],
]


@settings(COMMON, max_examples=SLOW)
@given(
    vcf_texts(),
    st.sampled_from(OPTION_SETS),
    st.sampled_from(["out.tsv", "out.vcf.gz", "out.parquet", "out.csv", "in.vcf"]),
)
def test_cli_score(tmp_path_factory, generated, options, output):
    text, n_alts = generated
    folder = tmp_path_factory.mktemp("cli")
    src = folder / "in.vcf"
    src.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    before = src.read_bytes()
    window = [] if "--window" in options else ["--window", "32"]
    argv = [
        "score",
        str(src),
        "-f",
        str(FASTA),
        "-m",
        str(MODELS["ps"]),
        *window,
        "-q",
        "--threads",
        "1",
        "-o",
        str(folder / output),
        *options,
    ]
    result = CliRunner().invoke(cli, argv)
    err = result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in err
    assert src.read_bytes() == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".partial")]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if result.exit_code == 0:
        out = folder / output
        assert out.exists()
        if n_alts is not None and output.endswith(".tsv") and not {"--shard", "--regions"} & set(options):
            from vepcli.output import read_scores

            assert len(read_scores(out)) == n_alts
    elif result.exit_code == 1:
        assert len(lines) == 1 and lines[0].startswith("vepcli: error: "), err
    else:
        assert result.exit_code == 2 and lines[-1].startswith("Error: "), err
