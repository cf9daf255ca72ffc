"""Make the small real-DNA test files in tests/data from ../shared/data (run once; outputs are committed).

    .venv/bin/python tests/data/make_test_data.py [path/to/GRCh37_chr22_subset.fa.gz]

Writes a 99,500 bp slice of GRCh37 chr22 as a contig named `22` that starts at position 1:
slice position i (1-based) is GRCh37 22:(i + OFFSET). See README.md in this folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pysam

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[2] / "shared" / "data" / "GRCh37_chr22_subset.fa.gz"
OFFSET = 17_470_299  # 0-based start of the slice in GRCh37 chr22
LENGTH = 99_500
NAME = "chr22_slice"
LINE = 60


def write_fasta(path: Path, name: str, seq: str, desc: str) -> None:
    with open(path, "w") as fh:
        fh.write(f">{name} {desc}\n")
        for i in range(0, len(seq), LINE):
            fh.write(seq[i : i + LINE] + "\n")


def example_vcf(seq: str) -> str:
    """A few records of each kind at real slice positions; REF always taken from the slice."""

    def other(base: str) -> str:
        return "ACGT"[("ACGT".index(base.upper()) + 1) % 4]

    def ref(pos: int, n: int = 1) -> str:
        return seq[pos - 1 : pos - 1 + n].upper()

    def covered(start: int, n: int = 1) -> int:
        """First 1-based position >= start with n non-N bases."""
        return next(p for p in range(start, len(seq)) if "N" not in ref(p, n))

    upper = next(i + 1 for i in range(500, len(seq)) if seq[i] in "ACGT")
    lower = next(i + 1 for i in range(500, len(seq)) if seq[i] in "acgt")
    in_n = seq.index("N" * 1000) + 500
    mnv, ins, dele, multi, sym = (
        covered(1000, 2),
        covered(2000),
        covered(3000, 4),
        covered(4000),
        covered(5000),
    )
    rows = [
        (upper, "snv1", ref(upper), other(ref(upper))),
        (lower, "snv_lower", ref(lower), other(ref(lower))),
        (mnv, "mnv", ref(mnv, 2), other(ref(mnv)) + other(ref(mnv + 1))),
        (ins, "ins", ref(ins), ref(ins) + "TTA"),
        (dele, "del", ref(dele, 4), ref(dele)),
        (multi, "multi", ref(multi), f"{other(ref(multi))},{other(other(ref(multi)))}"),
        (sym, "sym", ref(sym), "<DEL>"),
        (in_n, "in_N", "N", "A"),
        (LENGTH, "last_base", ref(LENGTH), other(ref(LENGTH))),
    ]
    rows.sort()
    head = [
        "##fileformat=VCFv4.2",
        f"##contig=<ID=22,length={LENGTH}>",
        f"##source=vepcli tests/data/make_test_data.py; POS = GRCh37 22 position - {OFFSET}",
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
    ]
    body = [f"22\t{pos}\t{vid}\t{r}\t{a}\t.\tPASS\t." for pos, vid, r, a in rows]
    return "\n".join(head + body) + "\n"


def main(source: Path) -> None:
    with pysam.FastaFile(str(source)) as fa:
        seq = fa.fetch("22", OFFSET, OFFSET + LENGTH)
    assert len(seq) == LENGTH and seq[0] != "N" and seq[-1] != "N" and "N" * 1000 in seq
    desc = f"GRCh37 22:{OFFSET + 1}-{OFFSET + LENGTH} (position i here is {OFFSET} + i in GRCh37)"
    plain = HERE / f"{NAME}.fa"
    write_fasta(plain, "22", seq, desc)
    pysam.faidx(str(plain))
    bgz = HERE / f"{NAME}.fa.gz"
    pysam.tabix_compress(str(plain), str(bgz), force=True)
    pysam.faidx(str(bgz))
    (HERE / f"{NAME}.vcf").write_text(example_vcf(seq))
    print(f"wrote {plain.name}, {bgz.name} (+ .fai/.gzi), {NAME}.vcf in {HERE}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE)
