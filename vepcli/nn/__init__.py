"""The model layer: tokenizer, selective scan, Mamba mixer, Caduceus (PS and Ph), checkpoint I/O.

No file or network I/O happens here except in `checkpoint.py` and `hub.py`.
"""

from vepcli.nn.caduceus import Caduceus, CaduceusForMaskedLM
from vepcli.nn.config import CaduceusConfig

__all__ = ["Caduceus", "CaduceusConfig", "CaduceusForMaskedLM"]
