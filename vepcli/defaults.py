"""Defaults shared by the commands and the library, importable without loading torch."""

POOL_DEFAULT = 1536  # bp, centred on the variant, as in the Caduceus variant effect protocol
DEFAULT_MODEL_NAME = "caduceus-ps-chr22-small"  # bundled: models/ in the repository, vepcli/models/ in the wheel
PROBE_KINDS = ("svm", "logistic")  # vepcli probe train --kind
PROBE_LAYOUTS = ("ref-alt", "ref-alt-diff")  # --features
PROBE_FOLDS = 5  # --folds
