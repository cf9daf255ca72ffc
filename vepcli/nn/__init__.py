"""The model layer: tokenizer, selective scan, the backbone interface and its families, checkpoint I/O.

Importing the package registers the built-in backbone families (Caduceus PS and Ph; the hybrid
Mamba-2/attention decoder; DNA-xLSTM) and DNA-xLSTM's published folder layout, so every loader knows
them. No file or network I/O happens here except in `checkpoint.py`, `hub.py` and `xlstm_published.py`.
"""

from vepcli.nn.backbone import Backbone, Family, register
from vepcli.nn.caduceus import Caduceus, CaduceusForMaskedLM
from vepcli.nn.config import CaduceusConfig
from vepcli.nn.hybrid import HybridLM, MambaLMConfig
from vepcli.nn.xlstm import XLSTMLM
from vepcli.nn.xlstm_config import XLSTMConfig
from vepcli.nn.xlstm_published import load_published  # registers the published DNA-xLSTM layout

__all__ = [
    "Backbone",
    "Caduceus",
    "CaduceusConfig",
    "CaduceusForMaskedLM",
    "Family",
    "HybridLM",
    "MambaLMConfig",
    "XLSTMConfig",
    "XLSTMLM",
    "load_published",
    "register",
]
