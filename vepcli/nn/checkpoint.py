"""Read and write backbone checkpoints in the published Hugging Face layout, for every registered family.

A directory holds `config.json` and `model.safetensors` (older uploads: `pytorch_model.bin`, read
with `weights_only=True`); the config's `model_type` picks the family (`vepcli.nn.backbone`). The
files omit tied tensors (Caduceus: mamba_rev's in/out projections, the LM head); we re-tie them, and
a loader that left them untied would silently give wrong numbers, so any other missing or unexpected
tensor is an error. We save the same way, so the official code loads what we write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vepcli.atomic import atomic_file
from vepcli.errors import UserError
from vepcli.nn.backbone import Backbone, Family, family_of, published_layout

CONFIG_NAME, WEIGHTS_NAME, TORCH_WEIGHTS_NAME = "config.json", "model.safetensors", "pytorch_model.bin"


def read_config_dict(directory: Path) -> dict[str, Any]:
    """config.json as a JSON object, or one line that says what the file is instead (the one reader:
    `modelcheck` validates what this returns)."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise UserError(f"{directory} has no {CONFIG_NAME}; is it a model directory?")
    if path.stat().st_size > 1 << 22:
        raise UserError(f"{path} is over 4 MB; it is not a model config")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; it is not a model config") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path} holds a JSON {type(config).__name__}, not an object; it is not a model config")
    return config


def read_config(directory: Path) -> tuple[Family, Any]:
    """(family, its config) of a model directory; an unknown `model_type` is one refusal line."""
    d = read_config_dict(directory)
    family = family_of(d, str(Path(directory) / CONFIG_NAME))
    return family, family.config_from_dict(d)


def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint directory, safetensors first, else a weights-only torch file."""
    directory = Path(directory)
    st, pt = directory / WEIGHTS_NAME, directory / TORCH_WEIGHTS_NAME
    try:
        if st.exists():
            return load_file(st)
        if pt.exists():
            return torch.load(pt, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, EOFError, ValueError) as err:
        bad = st if st.exists() else pt
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read weights from {bad} ({first}); the file is damaged or not a checkpoint") from None
    raise UserError(f"{directory} has neither {WEIGHTS_NAME} nor {TORCH_WEIGHTS_NAME}")


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy a published state dict into `model` (a backbone, or a family's model without its LM head),
    accepting only the omission of tied tensors."""
    family = family_of(model.config.to_dict())
    with_head = isinstance(model, Backbone)
    state = family.adapt_state(state, with_head)
    own = model.state_dict()
    tied = family.tied(model.config)
    missing = [k for k in own if k not in state and not tied.search(k)]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        what = (
            f"missing {missing[:3]}"
            if missing
            else f"unexpected {unexpected[:3]}"
            if unexpected
            else f"shape mismatch {wrong[:2]}"
        )
        raise UserError(f"weights in {source} do not match its config.json: {what}")
    with torch.no_grad():
        for k, v in own.items():
            if k in state:
                v.copy_(state[k])
    if with_head:
        model.tie_weights()


def load_model(
    path_or_id: str | Path,
    masked_lm: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Backbone | torch.nn.Module:
    """Load a model from a local directory or a Hugging Face id found in the local hub cache.

    `masked_lm=False`: the family's model without its LM head (Caduceus: the base `Caduceus`). A folder in
    a registered release layout (`backbone.register_layout`; DNA-xLSTM's) loads too."""
    from vepcli.nn.hub import resolve_model_dir

    directory = resolve_model_dir(path_or_id)
    layout = published_layout(directory)
    if layout is not None:  # a family's own release layout (DNA-xLSTM: model_config.json + a Lightning .ckpt)
        if not masked_lm:
            raise UserError(f"{directory} is a published {layout.name} folder; it loads whole (with its LM head)")
        return layout.load(directory).to(device=device, dtype=dtype).eval()
    family, config = read_config(directory)
    if not masked_lm and family.base is None:
        raise UserError(f"model_type {family.model_type!r} has no model without its LM head; load it whole")
    model = family.model(config) if masked_lm else family.base(config)
    load_into(model, read_state_dict(directory), str(directory))
    return model.to(device=device, dtype=dtype).eval()


def save_model(model: torch.nn.Module, directory: str | Path) -> Path:
    """Write config.json and model.safetensors as the published checkpoints have them.

    Each file is written under a temporary name and renamed into place (vepcli.atomic), so a stopped
    save never leaves a half-written file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    tied = family_of(config).tied(model.config)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if not tied.search(k)}
    with atomic_file(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    with atomic_file(directory / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(config, indent=2) + "\n")
    return directory
