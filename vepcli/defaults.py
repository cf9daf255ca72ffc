"""Defaults shared by the commands and the library, importable without loading torch."""

from __future__ import annotations

from dataclasses import field
from typing import Any

POOL_DEFAULT = 1536  # bp, centred on the variant, as in the Caduceus variant effect protocol
DEFAULT_MODEL_NAME = "caduceus-ps-chr22-small"  # bundled: models/ in the repository, vepcli/models/ in the wheel
PROBE_KINDS = ("svm", "logistic")  # vepcli probe train --kind
# Feature layouts: the blocks concatenated, in order. `ref-alt` is the paper's [ref | alt]; `alt-ref` is the
# difference, which a head on raw features would otherwise barely see; `seq` is one window (intervals).
# One vocabulary for the probe (vepcli.features) and the fine-tuned head (vepcli.finetune).
LAYOUTS: dict[str, tuple[str, ...]] = {
    "ref-alt-diff": ("ref", "alt", "alt-ref"),
    "ref-alt": ("ref", "alt"),
    "diff": ("alt-ref",),
    "seq": ("seq",),
}
PROBE_LAYOUTS = ("ref-alt", "ref-alt-diff")  # --features
PROBE_FOLDS = 5  # --folds


_ADDED = {"omit_default": True}


def added_setting(default: Any = None) -> Any:
    """A setting added after runs were recorded (the hybrid's shape, --echo): part of a run's (or
    a file's) identity and record only when it is not its default, so that earlier runs, their checkpoints, records
    and digests read as before."""
    return field(default=default, metadata=_ADDED)


def recorded(cfg: Any, f: Any) -> bool:
    """Whether field `f` belongs in cfg's identity and record (an added setting at its default does not)."""
    return not (f.metadata.get("omit_default") and getattr(cfg, f.name) == f.default)
