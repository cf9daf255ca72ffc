"""The Python API under the CLI: load a model, tokenize, get hidden states and masked-LM logits.

>>> import vepcli.api as vep
>>> model = vep.load("path/to/model")            # or a Hugging Face id in the local cache
>>> logits, hidden = vep.forward(model, ["ACGTACGT", "TTGACA"])
>>> emb = vep.embed(model, ["ACGTACGT"])          # strand-averaged last hidden state
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vepcli.nn.caduceus import Caduceus, CaduceusForMaskedLM
from vepcli.nn.checkpoint import load_model, save_model
from vepcli.nn.strand import strand_average
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
def forward(model: CaduceusForMaskedLM, x: torch.Tensor | str | Sequence[str]):
    """(logits, last hidden state) for token ids or DNA strings, in one pass."""
    return model(_ids(model, x), return_hidden=True)


@torch.no_grad()
def hidden_states(model: Caduceus | CaduceusForMaskedLM, x) -> torch.Tensor:
    """Last hidden state after the final norm: (batch, L, 2*d_model) for PS, (batch, L, d_model) for Ph."""
    base = model.caduceus if isinstance(model, CaduceusForMaskedLM) else model
    return base(_ids(model, x))


@torch.no_grad()
def logits(model: CaduceusForMaskedLM, x) -> torch.Tensor:
    """Masked-LM logits (batch, L, 16) in fp32."""
    return model(_ids(model, x))


@torch.no_grad()
def embed(model: Caduceus | CaduceusForMaskedLM, x, strand_average_: bool = True) -> torch.Tensor:
    """Strand-averaged last hidden state per position, (batch, L, d_model)."""
    ids = _ids(model, x)
    rcps = model.config.rcps
    h = hidden_states(model, ids)
    if not strand_average_:
        return h[..., : model.config.d_model] if rcps else h
    h_rc = None if rcps else hidden_states(model, reverse_complement_ids(ids))
    return strand_average(h, h_rc, rcps)
