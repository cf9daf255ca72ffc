"""Read DNA-xLSTM checkpoints in the published layout: `model_config.json` + a Lightning `.ckpt`.

The authors' folders (e.g. dna_xlstm_500k_mlm_ph/) hold `model_config.json` ({"config": {...}}: the public
xLSTMConfig's keyword arguments) and `checkpoints/**/*.ckpt`, a torch.save of a dict whose `state_dict`
has the LightningModule's keys (`model.backbone.` + xLSTMLMModel's names). Only plain tensors are read
(`torch.load(weights_only=True)`); a checkpoint that needs pickle executed to load (Lightning stores
hyper-parameters as OmegaConf objects) is refused with the command that re-saves its state dict alone.

Key mapping to vepcli's model (`nn/xlstm.py`):
- the `model.backbone.` prefix goes (`model._orig_mod.backbone.` when trained compiled); PS checkpoints
  wrap each module in `.submodule`, vepcli runs the stack on a doubled batch instead, so that level goes
  too; the PS embedding's and head's `complement_map` buffers go (vepcli builds them from the config);
- the sLSTM cell's `_recurrent_kernel_` / `_bias_` are stored by backend: the CUDA kernel (trained
  checkpoints) as (heads, head_dim, 4 head_dim) with a flat (head, gate, head_dim) bias, the PyTorch
  ("vanilla") one as (heads, 4 head_dim, head_dim) with a flat (gate, head, head_dim) bias. The kernel's
  shape tells which; both become vepcli's (heads, head_dim, 4, head_dim) and (heads, 4, head_dim). (Loading
  one backend's tensors into the other fails on the kernel and silently scrambles the bias.)
- the sLSTM block's FFN `proj_up` rows are [gate; up], vepcli's GatedMLP `fc1` rows [up; gate].

A published PS model with sLSTM blocks is read with `ps_head_flip` (its numbers need the deviation);
`vepcli model info` says so.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch

from vepcli.errors import UserError
from vepcli.nn.backbone import PublishedLayout, register_layout
from vepcli.nn.slstm import GATES
from vepcli.nn.xlstm import XLSTMLM, build
from vepcli.nn.xlstm_config import XLSTMConfig

PUBLISHED_CONFIG = "model_config.json"
PREFIX = "model.backbone."
# public xLSTMConfig arguments that do not change the network vepcli builds (the public code ignores
# tie_weights and pad_vocab_size_multiple; dropout is off at inference)
IGNORED = ("_target_", "tie_weights", "pad_vocab_size_multiple", "dropout")
SLSTM_CELL = re.compile(r"^(.*\.slstm_cell\.)_(recurrent_kernel|bias)_$")
FFN_UP = re.compile(r"^(.*\.ffn\.)proj_up\.weight$")


def is_published_dir(directory: Path) -> bool:
    """A folder in the published layout (model_config.json and no vepcli config.json)."""
    return (directory / PUBLISHED_CONFIG).is_file() and not (directory / "config.json").is_file()


def published_config(directory: Path) -> XLSTMConfig:
    """XLSTMConfig from a published model_config.json, or one refusal line."""
    path = directory / PUBLISHED_CONFIG
    if path.stat().st_size > 1 << 22:
        raise UserError(f"{path} is over 4 MB; it is not a model config")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path} is not a JSON model config ({type(err).__name__})") from None
    cfg = raw.get("config") if isinstance(raw, dict) else None
    if not isinstance(cfg, dict) or "xLSTMConfig" not in str(cfg.get("_target_", "")):
        raise UserError(f"{path} is not a DNA-xLSTM model_config.json (no config._target_ naming xLSTMConfig)")
    d = {k: v for k, v in cfg.items() if k not in IGNORED}  # complement_map null: the tokenizer's map
    d["ps_head_flip"] = bool(d.get("rcps")) and bool(d.get("s_lstm_at"))
    return XLSTMConfig.from_dict(d)


def find_checkpoint(directory: Path) -> Path:
    """The one .ckpt under a published folder (or one line listing them)."""
    found = sorted(directory.rglob("*.ckpt"))
    if len(found) != 1:
        what = "no .ckpt file" if not found else f"{len(found)} .ckpt files ({', '.join(str(p) for p in found[:3])})"
        raise UserError(f"{directory} holds {what}; keep exactly one checkpoint next to {PUBLISHED_CONFIG}")
    return found[0]


def read_lightning_state(path: Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning checkpoint, read without executing pickle."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path} needs Python objects unpickled to load, which vepcli never does; in an environment you "
            "trust, re-save its weights alone: python -c \"import torch; c = torch.load('IN.ckpt', "
            "weights_only=False); torch.save({'state_dict': c['state_dict']}, 'OUT.ckpt')\""
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        raise UserError(f"cannot read {path} ({type(err).__name__}); the file is damaged or not a checkpoint") from None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"{path} holds no Lightning state_dict")
    return state


def slstm_tensor(name: str, t: torch.Tensor, kernel: torch.Tensor, config: XLSTMConfig) -> torch.Tensor:
    """One cell's recurrent kernel or bias in vepcli's layout; the kernel's shape tells the backend's layout."""
    heads = config.s_num_heads
    dh = config.d_model // heads
    cuda, vanilla = (heads, dh, GATES * dh), (heads, GATES * dh, dh)
    if tuple(kernel.shape) not in (cuda, vanilla):
        raise UserError(
            f"sLSTM recurrent kernel of shape {tuple(kernel.shape)} is in neither the CUDA {cuda} nor the "
            f"PyTorch {vanilla} layout of a d_model {config.d_model}, {heads}-head model"
        )
    if name == "recurrent_kernel":
        if tuple(kernel.shape) == cuda:
            return t.reshape(heads, dh, GATES, dh)
        return t.reshape(heads, GATES, dh, dh).permute(0, 3, 1, 2)  # vanilla: [h, g * dh + j, k] -> [h, k, g, j]
    if tuple(kernel.shape) == cuda:
        return t.reshape(heads, GATES, dh)
    return t.reshape(GATES, heads, dh).transpose(0, 1)


def map_state(state: dict[str, torch.Tensor], config: XLSTMConfig) -> dict[str, torch.Tensor]:
    """A published Lightning state dict in vepcli's keys and layouts."""
    state = {k.replace("._orig_mod.", "."): v for k, v in state.items()}  # a run with train.compile_model
    own = {k.removeprefix(PREFIX).replace(".submodule.", "."): v for k, v in state.items() if k.startswith(PREFIX)}
    own = {k: v for k, v in own.items() if not k.endswith(".complement_map")}  # vepcli's come from the config
    if not own:
        raise UserError(f"the checkpoint's state_dict has no {PREFIX}* keys; it is not a DNA-xLSTM LM checkpoint")
    out = {}
    for key, value in own.items():
        if m := SLSTM_CELL.match(key):
            kernel = own[f"{m.group(1)}_recurrent_kernel_"]
            out[m.group(1) + m.group(2)] = slstm_tensor(m.group(2), value, kernel, config)
        elif m := FFN_UP.match(key):
            gate, up = value.chunk(2, dim=0)
            out[f"{m.group(1)}fc1.weight"] = torch.cat([up, gate])
        else:
            out[key.replace(".ffn.proj_down.", ".ffn.fc2.").replace(".conv1d.conv.", ".conv1d.")] = value
    return out


def load_published(directory: Path) -> XLSTMLM:
    """A published DNA-xLSTM folder as a vepcli model (float32, CPU, eval mode)."""
    from vepcli.nn.checkpoint import load_into

    directory = Path(directory)
    config = published_config(directory)
    model = build(config)
    load_into(model, map_state(read_lightning_state(find_checkpoint(directory)), config), str(directory))
    return model.eval()


register_layout(PublishedLayout("DNA-xLSTM", is_published_dir, find_checkpoint, load_published))
