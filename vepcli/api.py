"""The Python API under the CLI: load a model, tokenize, get hidden states and LM logits.

Every call takes a backbone (`vepcli.nn.backbone.Backbone`, what `load` returns); `hidden_states` also
takes a family's model without its LM head (`load(..., masked_lm=False)`).

>>> import vepcli.api as vep
>>> model = vep.load("path/to/model")            # or a Hugging Face id in the local cache
>>> logits, hidden = vep.forward(model, ["ACGTACGT", "TTGACA"])
>>> emb = vep.embed(model, ["ACGTACGT"])          # strand-averaged last hidden state
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vepcli.nn.backbone import Backbone
from vepcli.nn.checkpoint import load_model, save_model
from vepcli.nn.strand import carries_both_strands, check_echo, read_states, strand_average
from vepcli.nn.tokenizer import batch_encode, decode, encode, reverse_complement, reverse_complement_ids

__all__ = [
    "load",
    "save",
    "tokenize",
    "encode",
    "decode",
    "reverse_complement",
    "reverse_complement_ids",
    "forward",
    "hidden_states",
    "logits",
    "embed",
    "strand_average",
]

load = load_model
save = save_model


def tokenize(seqs: str | Sequence[str], length: int | None = None) -> torch.Tensor:
    """DNA strings -> (batch, L) ids, left-padded with [PAD] as the published tokenizer does."""
    return batch_encode([seqs] if isinstance(seqs, str) else list(seqs), length)


def _ids(model: torch.nn.Module, x: torch.Tensor | str | Sequence[str]) -> torch.Tensor:
    ids = x if isinstance(x, torch.Tensor) else tokenize(x)
    return ids.to(next(model.parameters()).device)


@torch.no_grad()
def forward(model: Backbone, x: torch.Tensor | str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, last hidden state) for token ids or DNA strings, in one pass."""
    hidden = model.hidden_states(_ids(model, x))
    return model.lm_logits(hidden), hidden


@torch.no_grad()
def hidden_states(model: Backbone | torch.nn.Module, x) -> torch.Tensor:
    """Last hidden state after the final norm: (batch, L, 2 * hidden_width) for PS, (batch, L, hidden_width)
    otherwise. A model without its LM head returns it from its forward."""
    ids = _ids(model, x)
    return model.hidden_states(ids) if isinstance(model, Backbone) else model(ids)


@torch.no_grad()
def logits(model: Backbone, x) -> torch.Tensor:
    """LM logits (batch, L, vocab_size) in fp32 (masked or next-token, as `model.objective` says)."""
    return model(_ids(model, x))


@torch.no_grad()
def embed(model: Backbone, x, strand_average_: bool = True, echo: bool = False) -> torch.Tensor:
    """Strand-averaged last hidden state per position, (batch, L, hidden_width).

    `echo` (causal models): the states of echo passes (`[x ; x]`, the second copy's), which see both sides."""
    check_echo(model, echo)
    ids = _ids(model, x)
    rcps = carries_both_strands(model.strands, model.arch)
    h = read_states(model, ids, echo)
    if not strand_average_:
        return h[..., : model.hidden_width] if rcps else h
    h_rc = None if rcps else read_states(model, reverse_complement_ids(ids), echo)
    return strand_average(h, h_rc, rcps)
