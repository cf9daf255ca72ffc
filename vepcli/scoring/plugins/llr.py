"""`llr`: the masked log-likelihood ratio, the zero-shot score of the Caduceus variant effect protocol.

log p(alt) - log p(ref) at the changed positions, read off one forward pass in which all of them are
[MASK]ed (summed over positions for an MNV). Negative: the model finds the alternate allele less likely
than the reference (the usual sign of a damaging variant). Defined for SNVs and MNVs.
"""

from __future__ import annotations

from typing import Any

from vepcli.scoring.registry import MASKED_LOGP, Empty, Score, ScoreInputs, register


def llr(logp: Any, ref: str, alt: str) -> float:
    """Sum over changed positions of log p(alt base) - log p(ref base); `logp` is (len(ref), vocab)."""
    import torch

    from vepcli.nn.tokenizer import encode

    ref_ids, alt_ids = torch.from_numpy(encode(ref)), torch.from_numpy(encode(alt))
    rows = torch.arange(len(ref))
    return float((logp[rows, alt_ids] - logp[rows, ref_ids]).sum())


def _compute(x: ScoreInputs) -> float | Empty:
    if x.masked_logp is not None:
        return llr(x.masked_logp, x.ref, x.alt)
    if x.kind in ("snv", "mnv"):
        return Empty(f"llr needs the whole allele ({len(x.ref)} bp) inside the window's right half")
    return Empty(f"llr is defined for SNVs and MNVs only; this allele is {x.kind}")


LLR = register(
    Score(
        "llr",
        "Masked log-likelihood ratio log p(alt) - log p(ref) at the changed positions, strand-averaged "
        "(SNVs and MNVs; negative = alt less likely than ref)",
        frozenset({MASKED_LOGP}),
        _compute,
        order=10,
    )
)
