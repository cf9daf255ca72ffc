"""`llr`: the log-likelihood ratio log p(alt) - log p(ref), read as the model's training objective allows.

Masked LM (the Caduceus variant effect protocol): log p(alt) - log p(ref) at the changed positions, read
off one forward pass in which all of them are [MASK]ed (summed over positions for an MNV). Defined for
SNVs and MNVs.

Causal LM (Evo 2's zero-shot score): log p(alt window) - log p(ref window), each the sum of
log p(token t | tokens < t) over the positions from the windows' first difference to the window's end
(the positions before it are the same in both windows and cancel), in each strand's 5'->3' reading, then
strand-averaged. Defined for every kind of allele, indels included, since both windows keep W bases.

Negative either way: the model finds the alternate allele less likely than the reference (the usual sign
of a damaging variant).
"""

from __future__ import annotations

from typing import Any

from vepcli.scoring.registry import CAUSAL_LL, MASKED_LOGP, Empty, Reading, Score, ScoreInputs, register


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


def causal_llr(ref_loglik: float, alt_loglik: float) -> float:
    """log p(alt window) - log p(ref window), from the two windows' strand-averaged log-likelihoods."""
    return alt_loglik - ref_loglik


def _compute_causal(x: ScoreInputs) -> float:
    return causal_llr(x.ref_loglik, x.alt_loglik)


LLR = register(
    Score(
        "llr",
        "Masked log-likelihood ratio log p(alt) - log p(ref) at the changed positions, strand-averaged "
        "(SNVs and MNVs; negative = alt less likely than ref)",
        frozenset({MASKED_LOGP}),
        _compute,
        order=10,
        objectives={
            "causal": Reading(
                "Causal log-likelihood ratio log p(alt window) - log p(ref window), summed over the positions "
                "from the first difference to the window end in each strand's 5'->3' reading, strand-averaged "
                "(all allele kinds; negative = alt less likely than ref)",
                frozenset({CAUSAL_LL}),
                _compute_causal,
            )
        },
    )
)
