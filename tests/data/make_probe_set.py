"""Build a labelled SNV set from real DNA whose label is learnable from sequence (for probe tests and demos).

    .venv/bin/python tests/data/make_probe_set.py -o probe_set.tsv [--fasta FA] [--n 400] [--seed 0]

Label = 1 when the SNV sits in soft-masked (lower-case, RepeatMasker) sequence of the reference, 0 when
it sits in unmasked sequence: a property of the local sequence (repeat families such as Alu and L1 recur
with recognisable composition), so a probe on pooled embeddings should learn it, while a shuffled label
cannot be learned. Classes are balanced (n/2 each). Columns use the Long Range Benchmark's names:

    chromosome, position (1-based), ref, alt, label, tissue, distance_to_boundary

`tissue` is random noise from four made-up values (it exercises the one-hot covariate path and must not
help); `distance_to_boundary` is the distance in bp to the nearest change of masking (or N), a numeric
column to bucket by: variants near a boundary should be harder, since their pooled span straddles both.
Positions within `--guard` bp of an N are skipped so every window is real sequence, and positions less than
`--margin` bp from a masking boundary are skipped so the label describes the pooled span, not one base
(a variant 3 bp inside an Alu has a pooled span that is half unique sequence). See docs/probes.md.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_FASTA = HERE / "chr22_slice.fa"
TISSUES = ("Adipose", "Lung", "Muscle", "Whole_Blood")


def read_first_contig(path: Path) -> tuple[str, str]:
    """(name, sequence with case kept) of the first contig; plain or gzip FASTA, read without an index."""
    opener = gzip.open if path.suffix == ".gz" else open
    name, parts = None, []
    with opener(path, "rt") as fh:
        for line in fh:
            if line.startswith(">"):
                if name is not None:
                    break
                name = line[1:].split()[0]
            elif name is not None:
                parts.append(line.strip())
    if name is None:
        raise SystemExit(f"{path}: no FASTA record")
    return name, "".join(parts)


def candidates(seq: np.ndarray, guard: int) -> np.ndarray:
    """0-based positions holding A/C/G/T (any case) with no N within `guard` bp either side."""
    is_n = ~np.isin(seq, np.frombuffer(b"ACGTacgt", dtype=np.uint8))
    n_before = np.concatenate([[0], np.cumsum(is_n)])
    idx = np.arange(guard, len(seq) - guard)
    clean = n_before[idx + guard + 1] - n_before[idx - guard] == 0
    return idx[clean]


def distance_to_boundary(state: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """bp from each position to the nearest base of another state (1 = the next base differs)."""
    changes = np.flatnonzero(state[1:] != state[:-1]) + 1  # first base of each new run
    if len(changes) == 0:
        return np.full(len(positions), len(state), dtype=np.int64)
    right = np.searchsorted(changes, positions, side="right")
    after = np.where(right < len(changes), changes[np.minimum(right, len(changes) - 1)] - positions, len(state))
    before = np.where(right > 0, positions - changes[np.maximum(right - 1, 0)] + 1, len(state))
    return np.minimum(after, before).astype(np.int64)


def build(fasta: Path, n: int, seed: int, guard: int, margin: int) -> pd.DataFrame:
    name, text = read_first_contig(fasta)
    seq = np.frombuffer(text.encode(), dtype=np.uint8)
    lower = (seq >= ord("a")) & (seq <= ord("z"))
    state = lower.astype(np.int8) + 2 * (np.isin(seq, np.frombuffer(b"Nn", dtype=np.uint8)))
    cand = candidates(seq, guard)
    cand = cand[distance_to_boundary(state, cand) >= margin]
    rng = np.random.default_rng(seed)
    picked = []
    for label in (1, 0):
        pool = cand[lower[cand] == bool(label)]
        if len(pool) < n // 2:
            raise SystemExit(f"only {len(pool)} candidates with label {label}; lower --n or --guard")
        picked.append(rng.choice(pool, size=n // 2, replace=False))
    pos0 = np.sort(np.concatenate(picked))
    ref = [chr(seq[p]).upper() for p in pos0]
    alt = [rng.choice([b for b in "ACGT" if b != r]) for r in ref]
    return pd.DataFrame(
        {
            "chromosome": name,
            "position": pos0 + 1,
            "ref": ref,
            "alt": alt,
            "label": lower[pos0].astype(int),
            "tissue": rng.choice(TISSUES, size=len(pos0)),
            "distance_to_boundary": distance_to_boundary(state, pos0),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fasta", type=Path, default=DEFAULT_FASTA)
    parser.add_argument("--n", type=int, default=400, help="number of SNVs (half of each class)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guard", type=int, default=512, help="bp without N on each side")
    parser.add_argument(
        "--margin", type=int, default=64, help="keep SNVs at least this many bp from a masking boundary (a clean label)"
    )
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    frame = build(args.fasta, args.n, args.seed, args.guard, args.margin)
    frame.to_csv(args.output, sep="\t", index=False)
    print(f"wrote {len(frame)} SNVs ({int(frame.label.sum())} in repeats) to {args.output}")


if __name__ == "__main__":
    main()
