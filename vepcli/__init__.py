"""vepcli: variant effect prediction with Caduceus DNA language models."""

__version__ = "0.1.0"
