"""Ref and alt windows (design step 3): W bases each, the variant's first base at index W // 2.

The alt window is the ref window with REF replaced by ALT at W // 2 and then cut or extended on the
right end only, so both keep W bases and the left flank stays aligned. Records whose ref windows
start at the same place share one ref window (and so one ref computation). Rules: docs/input-rules.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from vepcli.genome import Genome
from vepcli.variants import TOO_MANY_N, Variant

DEFAULT_MAX_N_FRACTION = 0.5


def window_start(pos: int, width: int) -> int:
    """0-based start of the window of a variant at 1-based pos (may be negative: N-padded)."""
    return (pos - 1) - width // 2


def _window_pair(genome: Genome, contig: str, pos: int, ref: str, alt: str, width: int) -> tuple[str, str]:
    """Ref and alt windows from one fetch: W bases plus the extra right bases a deletion needs."""
    start, centre = window_start(pos, width), width // 2
    extra = max(0, len(ref) - len(alt))
    seq = genome.fetch(contig, start, start + width + extra)
    alt_seq = seq[:centre] + alt.upper() + seq[centre + len(ref) :]
    return seq[:width], alt_seq[:width]


def changed_positions(kind: str, ref: str, width: int) -> range:
    """Window indexes where ref and alt windows may differ, for SNVs and MNVs (W//2 .. W//2+len(REF)-1);
    empty for other kinds, where the alt window is shifted."""
    if kind not in ("snv", "mnv"):
        return range(0)
    centre = width // 2
    return range(centre, min(width, centre + len(ref)))


def strand_starts(ref_seq: str, alt_seq: str) -> tuple[int, int]:
    """Where a ref and an alt window of one length first differ in each strand's 5'->3' reading: (forward
    index, index in the reverse-complement windows); (W, W) when they are the same. From there on a causal
    model's log-likelihoods of the two windows can differ; before it they are the same."""
    import numpy as np

    width = len(ref_seq)
    if len(alt_seq) != width:
        raise ValueError(f"windows of {width} and {len(alt_seq)} bases")
    differ = np.flatnonzero(np.frombuffer(ref_seq.encode(), np.uint8) != np.frombuffer(alt_seq.encode(), np.uint8))
    if not len(differ):
        return width, width
    return int(differ[0]), width - 1 - int(differ[-1])


def n_fraction(seq: str) -> float:
    """Fraction of N bases in an upper-case window."""
    return seq.count("N") / len(seq) if seq else 0.0


@dataclass(slots=True)
class WindowBatch:
    """Windows for a list of ok variants.

    ref_seqs[ref_index[i]] is the ref window of variants[i], alt_seqs[i] its alt window and
    changed[i] the indexes that differ for SNVs/MNVs. ref_keys[j] = (FASTA contig, 0-based start).
    """

    width: int
    variants: list[Variant] = field(default_factory=list)
    ref_keys: list[tuple[str, int]] = field(default_factory=list)
    ref_seqs: list[str] = field(default_factory=list)
    ref_index: list[int] = field(default_factory=list)
    alt_seqs: list[str] = field(default_factory=list)
    changed: list[range] = field(default_factory=list)


def _contig(variant: Variant, genome: Genome) -> str:
    name = variant.fasta_chrom or genome.resolve(variant.chrom)
    if name is None:
        raise ValueError(f"variant {variant.chrom}:{variant.pos} has no FASTA contig; run check_against_reference")
    return name


def build_windows(
    variants: Iterable[Variant],
    genome: Genome,
    width: int,
    *,
    share: bool = True,
    max_n_fraction: float = DEFAULT_MAX_N_FRACTION,
) -> WindowBatch:
    """Windows for the ok variants among `variants` (others are skipped).

    A variant whose ref window has more than max_n_fraction N gets status too_many_N and is left
    out. With share=True, variants whose ref windows start at the same place point at one ref
    window. Memory is ~2 W bytes per variant: call it on chunks (see iter_window_batches).
    """
    if width < 1:
        raise ValueError(f"window width must be positive, got {width}")
    batch = WindowBatch(width)
    slots: dict[tuple[str, int], int] = {}
    for v in variants:
        if not v.ok:
            continue
        contig = _contig(v, genome)
        ref_seq, alt_seq = _window_pair(genome, contig, v.norm_pos, v.norm_ref, v.norm_alt, width)
        frac = n_fraction(ref_seq)
        if frac > max_n_fraction:
            v.fail(TOO_MANY_N, f"{frac:.0%} of the {width} bp window is N (limit {max_n_fraction:.0%})")
            continue
        key = (contig, window_start(v.norm_pos, width))
        slot = slots.get(key) if share else None
        if slot is None:
            slot = len(batch.ref_seqs)
            batch.ref_keys.append(key)
            batch.ref_seqs.append(ref_seq)
            if share:
                slots[key] = slot
        batch.variants.append(v)
        batch.ref_index.append(slot)
        batch.alt_seqs.append(alt_seq)
        batch.changed.append(changed_positions(v.kind, v.norm_ref, width))
    return batch
