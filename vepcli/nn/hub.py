"""Find a model directory from a local path or a Hugging Face id, without needing the network.

A hub id (`owner/name`, optionally `@revision`) is looked up in the local Hugging Face cache
(`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), where
`huggingface-cli download <id>` or any earlier download puts it: `models--owner--name/snapshots/<sha>/`.
When `huggingface_hub` is installed and the network is allowed we let it download; otherwise the
error says which command fills the cache.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from vepcli.defaults import DEFAULT_MODEL_NAME
from vepcli.errors import UserError


def bundled_model_dir(name: str = DEFAULT_MODEL_NAME) -> Path | None:
    """A model shipped with vepcli: `vepcli/models/NAME` in an installed wheel (setup.py copies the
    repository's models/ there), else `models/NAME` of the source checkout (editable install)."""
    shipped = resources.files("vepcli") / "models" / name
    checkout = Path(__file__).resolve().parents[2] / "models" / name
    for folder in (Path(str(shipped)), checkout):
        if (folder / "config.json").is_file():
            return folder
    return None


def default_model() -> str:
    """$VEPCLI_MODEL, else the model shipped with vepcli (in the wheel, or models/ of a checkout)."""
    if os.environ.get("VEPCLI_MODEL"):
        return os.environ["VEPCLI_MODEL"]
    bundled = bundled_model_dir(DEFAULT_MODEL_NAME)
    if bundled is None:
        raise UserError(
            f"no default model {DEFAULT_MODEL_NAME} in this installation; pass --model DIR_OR_HUB_ID "
            "or set VEPCLI_MODEL"
        )
    return str(bundled)


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _from_cache(repo_id: str, revision: str) -> Path | None:
    repo = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    if not repo.is_dir():
        return None
    ref = repo / "refs" / revision
    sha = ref.read_text().strip() if ref.is_file() else revision
    snap = repo / "snapshots" / sha
    if (snap / "config.json").is_file():
        return snap
    snaps = sorted((repo / "snapshots").glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return snaps[-1].parent if snaps and revision == "main" else None


def _download(repo_id: str, revision: str) -> Path | None:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return None
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=["config.json", "*.safetensors", "*.bin"])
        )
    except Exception:  # noqa: BLE001 - no network, unknown id, hub errors: fall through to the one-line error
        return None


def resolve_model_dir(path_or_id: str | Path) -> Path:
    """A local directory as it is; else a hub id from the cache (or a download when possible)."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    text = str(path_or_id)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        repo_id, _, revision = text.partition("@")
        found = _from_cache(repo_id, revision or "main") or _download(repo_id, revision or "main")
        if found:
            return found
        raise UserError(
            f"model {text!r} is not in the local Hugging Face cache ({hub_cache_dir()}); run "
            f"'huggingface-cli download {repo_id}' on a machine with network, or pass a directory"
        )
    raise UserError(f"model {text!r} is neither a directory nor a Hugging Face id (owner/name)")
