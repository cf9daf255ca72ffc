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


def model_info(path_or_id: str) -> dict[str, Any]:
    from vepcli.modelcheck import load_checked

    directory, model, _ = load_checked(path_or_id)
    c = model.config
    return {
        "path": str(directory),
        "architecture": "Caduceus",
        "variant": "PS (RC-equivariant)" if c.rcps else "Ph (strand-average at inference)",
        "d_model": c.d_model,
        "n_layer": c.n_layer,
        "hidden_width": c.hidden_width,
        "d_state": c.d_state,
        "d_inner": c.d_inner,
        "dt_rank": c.dt_rank,
        "bidirectional": f"{c.bidirectional} ({c.bidirectional_strategy}, weight tie {c.bidirectional_weight_tie})",
        "vocab_size": c.vocab_size,
        "parameters": model.num_parameters(),
        "max_length": c.max_length if c.max_length else "unknown (not in config.json)",
        "config_hash": config_hash(c.to_dict()),
        "scan_kernel": scan_kernels(),
    }


def scan_kernels() -> str:
    """Which selective scan runs here, per device: what `--device` will get."""
    import torch

    from vepcli.nn.kernels import scan_backend

    where = [f"{scan_backend('cpu')} on CPU"]
    if torch.cuda.is_available():
        where.append(f"{scan_backend('cuda')} on CUDA")
    return ", ".join(where)
