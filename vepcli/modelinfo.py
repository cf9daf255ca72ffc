"""Facts about a model checkpoint, for `vepcli model info` and for output headers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in 1 MB blocks: outputs, probes and heads record their model's weights by it."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def config_hash(config_dict: dict[str, Any]) -> str:
    """A short stable digest of a config: probes and outputs record it to refuse mixing models."""
    return hashlib.sha256(json.dumps(config_dict, sort_keys=True).encode()).hexdigest()[:16]


STRAND_HANDLING = {
    "ps": "ps (reverse-complement equivariant by construction)",
    "ph": "ph (average over the window and its reverse complement)",
}


def model_info(path_or_id: str) -> dict[str, Any]:
    """What `vepcli model info` prints: the interface's facts, then the family's own."""
    from vepcli.modelcheck import load_checked

    directory, model, _ = load_checked(path_or_id)
    length = model.trained_length
    return {
        "path": str(directory),
        "family": model.model_type,
        "objective": f"{model.objective} LM",
        "strands": STRAND_HANDLING.get(model.strands, model.strands),
        **model.describe(),
        "pooled_width": model.hidden_width,
        "parameters": model.num_parameters(),
        "max_length": length if length else "unknown (not in config.json)",
        "config_hash": config_hash(model.config.to_dict()),
        "scan_kernel": scan_kernels(model),
    }


def scan_kernels(model: Any) -> str:
    """Which scan kernel the model runs here, per device: what `--device` will get."""
    import torch

    where = [f"{model.scan_backend('cpu')} on CPU"]
    if torch.cuda.is_available():
        where.append(f"{model.scan_backend('cuda')} on CUDA")
    return ", ".join(where)
