"""Defaults shared by the commands and the library, importable without loading torch."""

SCORE_NAMES = ("llr", "emb_l2", "emb_cos")
POOL_DEFAULT = 1536  # bp, centred on the variant, as in the Caduceus variant effect protocol
