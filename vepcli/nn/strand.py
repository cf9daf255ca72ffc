"""Strand averaging, written once: the engine, the Python API and the fine-tuning head all use it.

A DNA model's reading of a window should not depend on the strand it was given. A backbone says how
it reads the two strands (`Backbone.strands`). "ps" (RC parameter sharing, Caduceus-PS) carries both
strands in its hidden state: the second half of the channels is the reverse strand, stored flipped in
channels, so only the channels flip back. "ph" (Caduceus-Ph) sees one strand: a second pass on the
reverse-complement sequence is read at the same bases (flipped back in length, or read at mirrored
indexes). The average of the two readings is `mean_of_strands`.
"""

from __future__ import annotations

import torch

from vepcli.errors import UserError


def carries_both_strands(strands: str, arch: str) -> bool:
    """True for "ps" (one pass holds both strands), False for "ph" (a second pass on the reverse
    complement); a strand handling these averages do not implement yet is one refusal line."""
    if strands not in ("ps", "ph"):
        raise UserError(f"{arch} reads strands by {strands!r}, which this vepcli cannot average yet")
    return strands == "ps"


def mean_of_strands(fwd: torch.Tensor, rev: torch.Tensor) -> torch.Tensor:
    """The strand average of two readings aligned to forward-strand positions and channels."""
    return 0.5 * (fwd + rev)


def strand_average(hidden_fwd: torch.Tensor, hidden_rc: torch.Tensor | None, rcps: bool) -> torch.Tensor:
    """Average the two strands of a hidden state per position: (..., L, d_model).

    PS: its two halves (`hidden_rc` unused). Ph: the pass on the reverse-complement sequence
    (`hidden_rc`), flipped back in length; without it, the forward pass alone.
    """
    if rcps:
        d = hidden_fwd.shape[-1] // 2
        return mean_of_strands(hidden_fwd[..., :d], hidden_fwd[..., d:].flip(-1))
    if hidden_rc is None:
        return hidden_fwd
    return mean_of_strands(hidden_fwd, hidden_rc.flip(-2))


def pooled_strand_average(
    hidden: torch.Tensor, hidden_rc: torch.Tensor | None, span: tuple[int, int], rcps: bool, average: bool = True
) -> torch.Tensor:
    """The hidden state mean-pooled over positions [start, end), in float32: (..., d_model).

    `hidden` is (..., L, C) of the forward pass; `hidden_rc` that of the reverse-complement pass (Ph
    only), whose bases [start, end) sit at [L - end, L - start). `average=False`: the forward strand only.
    """
    s, e = span
    if rcps:
        d = hidden.shape[-1] // 2
        fwd = hidden[..., s:e, :d].float().mean(-2)
        if not average:
            return fwd
        return mean_of_strands(fwd, hidden[..., s:e, d:].float().mean(-2).flip(-1))
    fwd = hidden[..., s:e, :].float().mean(-2)
    if not average or hidden_rc is None:
        return fwd
    length = hidden.shape[-2]
    return mean_of_strands(fwd, hidden_rc[..., length - e : length - s, :].float().mean(-2))


def check_echo(model, echo: bool) -> None:
    """Echo embeddings are for causal models, whose states see only their left side; one line otherwise."""
    if echo and model.objective != "causal":
        raise UserError(
            f"--echo is for causal LMs; {model.arch} is a {model.objective} LM, whose states already see both "
            "sides of each position: leave --echo out"
        )


def read_states(model, input_ids: torch.Tensor, echo_pass: bool = False) -> torch.Tensor:
    """The last hidden states of `input_ids` (B, L, C): of a plain pass, or of an echo pass, aligned to x."""
    if not echo_pass:
        return model.hidden_states(input_ids)
    return echo_states(model.hidden_states(echo(input_ids)), input_ids.shape[-1])


def echo(input_ids: torch.Tensor) -> torch.Tensor:
    """Echo embeddings' input (Springer et al. 2024; HybriDNA): `[x ; x]` along the length, (batch, 2L).

    A causal model's state at a position of the second copy has read the whole first copy, so it sees
    both sides of that position; `echo_states` keeps those states."""
    return torch.cat([input_ids, input_ids], dim=-1)


def echo_states(hidden: torch.Tensor, length: int) -> torch.Tensor:
    """The second copy's hidden states of an `echo` pass: (..., 2L, C) -> (..., L, C), aligned to x."""
    if hidden.shape[-2] != 2 * length:
        raise ValueError(f"an echo pass of a length-{length} input has {2 * length} positions, not {hidden.shape[-2]}")
    return hidden[..., length:, :]
