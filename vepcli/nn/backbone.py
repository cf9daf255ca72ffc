"""The backbone interface: what every DNA language model family gives the rest of vepcli.

The engine, the Python API, fine-tuning and `vepcli model info` see a model only through `Backbone`:
its training objective, how it reads the two strands, the width of its pooled vectors, its trained
length, and token ids -> hidden states -> logits. A family (Caduceus today) registers the class that
reads its `config.json` and builds its model under the config's `model_type`; `nn/checkpoint.py` and
`modelcheck.py` look families up here, so a new family adds a module and one `register` call.

Strand handling (`strands`):
- "ps": reverse-complement equivariant by construction; the hidden state carries both strands in
  2 * hidden_width channels, the second half the reverse strand flipped in channels (Caduceus-PS).
- "ph": one strand per pass; the engine averages a second pass on the reverse complement (Caduceus-Ph).

A causal model (objective "causal") reads 5'->3' only, so a position's state sees its left side only; echo
embeddings (`vepcli.nn.strand.echo`) give it both sides, whichever strand handling it has.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from vepcli.errors import UserError

OBJECTIVES = ("masked", "causal")
STRANDS = ("ps", "ph")
DEFAULT_MODEL_TYPE = "caduceus"  # a config.json without `model_type` that no family sniffs (early uploads)
NOTHING = re.compile(r"(?!)")  # a pattern no key matches


class BackboneConfig(Protocol):
    """A family's config: read from and written back to the published `config.json`, field for field."""

    def to_dict(self) -> dict[str, Any]: ...


class Backbone(nn.Module):
    """A DNA language model as the rest of vepcli uses it. Subclasses set the class attributes and
    implement `hidden_states`, `strands` and `arch` (the rest reads the config and `lm_head`)."""

    model_type: ClassVar[str]
    objective: ClassVar[str]  # "masked" (predicts [MASK]ed tokens) or "causal" (next token)
    config: BackboneConfig

    @property
    def strands(self) -> str:
        """One of "ps", "ph": how a reading of a window is made independent of its strand."""
        raise NotImplementedError

    @property
    def arch(self) -> str:
        """The short name output headers and model cards record (e.g. "caduceus-ps")."""
        raise NotImplementedError

    # Defaults read the fields every published config names (n_layer, d_model, max_length) and the
    # `lm_head` module; a family whose config differs overrides them.
    @property
    def n_layer(self) -> int:
        return self.config.n_layer

    @property
    def hidden_width(self) -> int:
        """Channels of a strand-averaged (pooled) hidden vector; PS hidden states carry twice as many."""
        return self.config.d_model

    @property
    def trained_length(self) -> int | None:
        """The sequence length the model was trained at (`max_length` in config.json), None if unknown."""
        return self.config.max_length

    @trained_length.setter
    def trained_length(self, length: int | None) -> None:
        self.config.max_length = length

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (batch, L) -> last hidden state after the final norm, (batch, L, channels)."""
        raise NotImplementedError

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM head on hidden vectors (..., channels) -> float32 logits (..., vocab_size).

        Separate from `forward` so that the engine runs the head only at the positions it reads."""
        return self.lm_head(hidden).float()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (batch, L) -> logits (batch, L, vocab_size) in float32."""
        return self.lm_logits(self.hidden_states(input_ids))

    def scan_backend(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> str:
        """The sequence kernel a forward pass on `device` runs (output headers, `vepcli model info`)."""
        return "none"

    def tie_weights(self) -> None:
        """Re-tie the tensors a checkpoint stores once (an LM head that is the embedding table)."""

    def describe(self) -> dict[str, Any]:
        """Family-specific facts for `vepcli model info`, in display order."""
        return {}

    def num_parameters(self) -> int:
        """Distinct parameters (tied tensors counted once), as published model cards count them."""
        return sum(p.numel() for p in {id(p): p for p in self.parameters()}.values())


@dataclass(frozen=True)
class Family:
    """How to read, build and write one family's checkpoints.

    `tied`: of a config, the state-dict keys the files omit because they are the same tensor as another.
    `adapt_state`: renames a published state dict into the model's keys (e.g. a base-model upload).
    `base`: the family's model without an LM head, when it has one (`load_model(masked_lm=False)`).
    `sniff`: recognises the family's config.json when it names no `model_type` (mamba_ssm writes none)."""

    model_type: str
    config_from_dict: Callable[[dict[str, Any]], BackboneConfig]
    model: Callable[[Any], Backbone]
    tied: Callable[[Any], re.Pattern[str]] = lambda _: NOTHING
    adapt_state: Callable[[dict[str, torch.Tensor], bool], dict[str, torch.Tensor]] = lambda state, _: state
    base: Callable[[Any], nn.Module] | None = None
    sniff: Callable[[dict[str, Any]], bool] | None = None


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Make a family loadable by the `model_type` of its config.json (re-registering replaces it)."""
    _FAMILIES[family.model_type] = family
    return family


@dataclass(frozen=True)
class PublishedLayout:
    """A family's own release layout that is not `config.json` + weights (read, never written): how to
    recognise such a folder, which file holds its weights (the run digest), and how to load it whole."""

    name: str
    recognises: Callable[[Path], bool]
    weights: Callable[[Path], Path]
    load: Callable[[Path], Backbone]


_LAYOUTS: list[PublishedLayout] = []


def register_layout(layout: PublishedLayout) -> PublishedLayout:
    """Make `--model FOLDER` read folders in this layout too (loading, checks and digests follow)."""
    _LAYOUTS.append(layout)
    return layout


def published_layout(directory: Path) -> PublishedLayout | None:
    """The registered layout a folder is in, or None for vepcli's own `config.json` + weights."""
    return next((layout for layout in _LAYOUTS if layout.recognises(Path(directory))), None)


def known_model_types() -> tuple[str, ...]:
    return tuple(sorted(_FAMILIES))


def family_of(config: dict[str, Any], source: str = "config.json") -> Family:
    """The registered family of a config dict, or one line naming the families this vepcli reads."""
    model_type = config.get("model_type") if "model_type" in config else _sniffed(config)
    if not isinstance(model_type, str) or model_type not in _FAMILIES:
        raise UserError(
            f"{source}: model_type {model_type!r} is not a model family vepcli reads "
            f"(known: {', '.join(known_model_types())})"
        )
    return _FAMILIES[model_type]


def _sniffed(config: dict[str, Any]) -> str:
    """The model_type of a config.json that names none."""
    return next((f.model_type for f in _FAMILIES.values() if f.sniff and f.sniff(config)), DEFAULT_MODEL_TYPE)
