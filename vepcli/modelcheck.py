"""Model folders behind a validation layer: config.json types and sizes are checked before a model is
built, every load failure is one line, and the weights file (safetensors or pytorch_model.bin) is
identified by its sha256, whatever its format. Rules: docs/input-rules.md ("Model folders")."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

from vepcli.errors import UserError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # the order the loader tries them in
# (field, largest value): beyond these a config describes no Caduceus model and only exhausts memory
MODEL_INT_LIMITS = {
    "d_model": 1 << 14,
    "n_layer": 1 << 10,
    "vocab_size": 1 << 12,
    "pad_vocab_size_multiple": 1 << 10,
    "max_length": 1 << 24,
}
SSM_INT_LIMITS = {"d_state": 1 << 10, "d_conv": 64, "expand": 16}
_BOOL_FIELDS = ("rms_norm", "residual_in_fp32", "fused_add_norm", "bidirectional", "bidirectional_weight_tie", "rcps")
_LOAD_ERRORS = (
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    IndexError,
    RuntimeError,
    OverflowError,
    MemoryError,
    EOFError,
    OSError,
    pickle.UnpicklingError,
)


def weights_file(directory: Path) -> Path | None:
    """The file the loader reads the weights from, or None (a registered release layout says which)."""
    from vepcli.nn.backbone import published_layout

    layout = published_layout(directory)
    if layout is not None:
        return layout.weights(directory)
    return next((directory / name for name in WEIGHT_FILES if (directory / name).is_file()), None)


def weights_digest(directory: Path) -> str:
    """sha256 of the weights file, whatever its format ('unknown' only when there is none)."""
    from vepcli.modelinfo import file_sha256

    found = weights_file(directory)
    return file_sha256(found) if found else "unknown"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(directory: Path) -> None:
    """Refuse a config.json that is not a JSON object or whose fields have the wrong type or an absurd size."""
    from vepcli.nn.checkpoint import CONFIG_NAME, read_config_dict

    path = directory / CONFIG_NAME
    config = read_config_dict(directory)
    _check_model_fields(path, config)
    _check_family(path, config)
    _check_ssm_fields(path, config.get("ssm_cfg"))
    cmap = config.get("complement_map")
    if cmap is not None and (
        not isinstance(cmap, dict)
        or not all(str(k).isdigit() and _is_int(v) and 0 <= v < 1 << 12 for k, v in cmap.items())
    ):
        raise UserError(f"{path}: complement_map must map token ids to token ids")


def _check_model_fields(path: Path, config: dict[str, Any]) -> None:
    """Sizes in range, flags boolean, names strings: the top-level fields."""
    for name, most in MODEL_INT_LIMITS.items():
        value = config.get(name)
        if name not in config or (value is None and name == "max_length"):
            continue
        if not _is_int(value) or not 1 <= value <= most:
            raise UserError(f"{path}: {name} must be a whole number from 1 to {most}, not {json.dumps(value)[:40]}")
    for name in _BOOL_FIELDS:
        if name in config and not isinstance(config[name], bool):
            raise UserError(f"{path}: {name} must be true or false, not {json.dumps(config[name])[:40]}")
    for name in ("model_type", "bidirectional_strategy"):
        if name in config and not isinstance(config[name], str):
            raise UserError(f"{path}: {name} must be a string")


def _check_family(path: Path, config: dict[str, Any]) -> None:
    """Refuse a `model_type` no registered backbone family reads, naming the ones it does."""
    from vepcli.nn.backbone import family_of

    family_of(config, str(path))


def _check_ssm_fields(path: Path, ssm: Any) -> None:
    """ssm_cfg: an object whose sizes are in range and whose dt_rank is "auto" or a positive number."""
    if ssm is not None and not isinstance(ssm, dict):
        raise UserError(f"{path}: ssm_cfg must be an object, not {json.dumps(ssm)[:40]}")
    for name, most in SSM_INT_LIMITS.items():
        value = (ssm or {}).get(name)
        if value is not None and (not _is_int(value) or not 1 <= value <= most):
            raise UserError(
                f"{path}: ssm_cfg.{name} must be a whole number from 1 to {most}, not {json.dumps(value)[:40]}"
            )
    rank = (ssm or {}).get("dt_rank", "auto")
    if rank != "auto" and (not _is_int(rank) or not 1 <= rank <= 1 << 14):
        raise UserError(f'{path}: ssm_cfg.dt_rank must be "auto" or a positive whole number')


def load_checked(path_or_id: str | Path):
    """(directory, model, weights sha256): a model loaded from a checked folder, or one UserError line."""
    from vepcli.modelinfo import file_sha256
    from vepcli.nn.backbone import published_layout
    from vepcli.nn.checkpoint import load_model
    from vepcli.nn.hub import resolve_model_dir

    directory = resolve_model_dir(path_or_id)
    if published_layout(directory) is None:  # a release layout is checked by its own reader
        check_config(directory)
    weights = weights_file(directory)
    if weights is None:
        raise UserError(f"{directory} has neither {WEIGHT_FILES[0]} nor {WEIGHT_FILES[1]}")
    try:
        model = load_model(directory)
    except UserError:
        raise
    except _LOAD_ERRORS as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(
            f"cannot load the model in {directory} ({type(err).__name__}: {first}); the weights file "
            "is damaged, holds more than plain tensors, or does not match config.json"
        ) from None
    return directory, model, file_sha256(weights)
