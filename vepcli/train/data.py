"""Training data: the train/validation split of intervals (vepcli.regions), and windows drawn from a FASTA.

Sampling is a pure function of (seed, step, sample index): the window of sample j of step s is
drawn from its own generator seeded with [seed, 0, s, j]. A resumed run therefore needs only the
step counter to see the very same data, and the samples of a step are the same whatever the
number of processes or the micro-batch size (each rank takes its own slice of the indices).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from vepcli.errors import UserError
from vepcli.genome import Genome
from vepcli.nn.tokenizer import COMPLEMENT, encode
from vepcli.regions import Interval, merge_regions, parse_region_list, read_bed, subtract
from vepcli.train.masking import IS_BASE, mask_window

MAX_TRIES = 1000  # windows drawn before we give up on intervals that hold (almost) no sequence
_COMPLEMENT_NP = COMPLEMENT.numpy()


def parse_region(text: str, genome: Genome | None = None) -> Interval:
    """One region of the shared grammar (vepcli.regions: `chr`, `chr:pos`, `chr:beg-end`, `chr:beg-`), with
    the FASTA's name for its contig and, given the FASTA, an open end made the contig's end."""
    regions = parse_region_list(text)
    if len(regions) != 1:
        raise UserError(f"region {text!r}: give one region here (repeat the option for more)")
    (region,) = regions
    if genome is None:
        if region.end is None:
            raise UserError(f"region {text!r} needs START-END here")
        return region
    contig = genome.require(region.contig)
    return Interval(contig, region.start, genome.length(contig) if region.end is None else region.end)


def read_bed_folds(path: str | Path) -> list[tuple[Interval, str | None]]:
    """BED intervals with the optional 4th column (Basenji/Enformer's `train`/`valid`/`test` fold)."""
    out = []
    for iv, more in read_bed(path):
        if iv.end <= iv.start:
            raise UserError(f"{path}: interval {iv} is empty (end {iv.end} is not after start {iv.start})")
        out.append((iv, more[0] if more else None))
    if not out:
        raise UserError(f"{path} holds no intervals")
    return out


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted (contigs by name), overlapping and touching intervals joined: the training order."""
    return merge_regions(sorted(intervals), str)


def _clip(genome: Genome, intervals: Iterable[Interval], where: str) -> list[Interval]:
    """Intervals with contig names as the FASTA has them, clipped to the contigs."""
    out = []
    for iv in intervals:
        name = genome.resolve(iv.contig)
        if name is None:
            raise UserError(f"{where}: contig {iv.contig!r} is not in FASTA {genome.path}")
        end = min(iv.end, genome.length(name))
        if end > iv.start:
            out.append(Interval(name, iv.start, end))
    return merge(out)


def split_intervals(
    genome: Genome,
    intervals: str | None = None,
    val_intervals: str | None = None,
    val_regions: Sequence[str] = (),
    val_fraction: float = 0.05,
) -> tuple[list[Interval], list[Interval]]:
    """(train, validation) intervals, disjoint.

    Training: the BED `intervals` (rows whose 4th column is `train`, when it has one) or every contig.
    Validation, first that applies: `val_intervals` BED and `val_regions`; the BED's `valid` rows;
    the last `val_fraction` of every training contig. Validation is cut out of training.
    """
    if intervals:
        rows = read_bed_folds(intervals)
        folds = {f for _, f in rows}
        train = [iv for iv, f in rows if f in (None, "train")] if "train" in folds else [iv for iv, _ in rows]
        bed_valid = [iv for iv, f in rows if f == "valid"]
    else:
        train = [Interval(c, 0, genome.length(c)) for c in genome.contigs]
        bed_valid = []
    train = _clip(genome, train, intervals or "FASTA")
    val = [parse_region(r, genome) for r in val_regions]
    if val_intervals:
        val += [iv for iv, _ in read_bed_folds(val_intervals)]
    if not val:
        val = bed_valid
    if not val:
        if not 0 < val_fraction < 1:
            raise UserError("--val-fraction must be between 0 and 1 when no validation regions are given")
        spans: dict[str, tuple[int, int]] = {}
        for iv in train:
            lo, hi = spans.get(iv.contig, (iv.start, iv.end))
            spans[iv.contig] = (min(lo, iv.start), max(hi, iv.end))
        val = [Interval(c, hi - int((hi - lo) * val_fraction), hi) for c, (lo, hi) in spans.items()]
    val = _clip(genome, val, "validation regions")
    train = subtract(train, val)
    if not train:
        raise UserError("no training sequence is left once the validation regions are removed")
    if not val:
        raise UserError("the validation regions are empty")
    return train, val


def base_fraction(ids: np.ndarray) -> float:
    """Share of A/C/G/T tokens (everything else is N or unknown, and never a target)."""
    return float(IS_BASE[ids].mean()) if len(ids) else 0.0


def reverse_complement_np(ids: np.ndarray) -> np.ndarray:
    return _COMPLEMENT_NP[ids[::-1]]


def sample_rng(seed: int, step: int, index: int) -> np.random.Generator:
    """The generator of sample `index` of training step `step`: the whole data order in one line."""
    return np.random.default_rng([seed, 0, step, index])


def val_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, 1, index])


class WindowSampler:
    """Windows of `seq_len` bases drawn uniformly from intervals; windows mostly N are drawn again.

    An interval is picked with probability proportional to its number of window starts (one for
    an interval shorter than the window, which is then N-padded).
    """

    def __init__(
        self, genome: Genome, intervals: Sequence[Interval], seq_len: int, min_base_fraction: float = 0.5
    ) -> None:
        self.genome, self.intervals, self.seq_len = genome, list(intervals), seq_len
        self.min_base_fraction = min_base_fraction
        starts = np.array([max(1, len(iv) - seq_len + 1) for iv in self.intervals], dtype=np.int64)
        self.cum = np.cumsum(starts)

    def draw(self, rng: np.random.Generator) -> tuple[Interval, np.ndarray]:
        """One window and its token ids, at least `min_base_fraction` of them A/C/G/T."""
        for _ in range(MAX_TRIES):
            k = int(rng.integers(self.cum[-1]))
            i = int(np.searchsorted(self.cum, k, side="right"))
            offset = k - (int(self.cum[i - 1]) if i else 0)
            iv = self.intervals[i]
            window = Interval(iv.contig, iv.start + offset, iv.start + offset + self.seq_len)
            ids = encode(self.genome.fetch(window.contig, window.start, window.end))
            if base_fraction(ids) >= self.min_base_fraction and base_fraction(ids) > 0:
                return window, ids
        raise UserError(
            f"{MAX_TRIES} windows drawn from the training intervals were all mostly N; "
            "give intervals that hold sequence (--intervals) or lower --min-base-fraction"
        )


def tile_windows(
    genome: Genome, intervals: Sequence[Interval], seq_len: int, max_windows: int, min_base_fraction: float = 0.5
) -> list[tuple[Interval, np.ndarray]]:
    """Non-overlapping windows tiling the intervals, mostly-N ones skipped, `max_windows` evenly spaced.

    A fixed validation set, so that every evaluation (and the k-mer baseline) sees the same bases.
    """
    found: list[tuple[Interval, np.ndarray]] = []
    for iv in intervals:
        for start in range(iv.start, max(iv.start + 1, iv.end - seq_len + 1), seq_len):
            window = Interval(iv.contig, start, start + seq_len)
            ids = encode(genome.fetch(window.contig, window.start, window.end))
            if base_fraction(ids) >= max(min_base_fraction, 1e-9):
                found.append((window, ids))
    if not found:
        raise UserError("the validation regions hold no window with enough sequence (all N?)")
    if len(found) > max_windows:
        pick = np.linspace(0, len(found) - 1, max_windows).round().astype(int)
        found = [found[i] for i in pick]
    return found


def validation_set(
    genome: Genome,
    intervals: Sequence[Interval],
    seq_len: int,
    n_windows: int,
    seed: int,
    mask_prob: float = 0.15,
    min_base_fraction: float = 0.5,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed windows with fixed masks: every evaluation, and the k-mer baseline, see the same targets."""
    windows = tile_windows(genome, intervals, seq_len, n_windows, min_base_fraction)
    return [mask_window(ids, val_rng(seed, i), mask_prob) for i, (_, ids) in enumerate(windows)]
