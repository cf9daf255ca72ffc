"""Defaults shared by the commands and the library, importable without loading torch."""

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
