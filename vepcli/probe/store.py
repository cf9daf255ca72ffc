"""Probe files: saved with skops (never pickle) and loaded only after every check a foreign file could fail.

A probe file is a zip that skops wrote; before anything is unpacked, its members, CRCs, types (against
vepcli's allow-list) and metadata fields are checked, so a damaged, truncated or hostile file is one line.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vepcli.atomic import atomic_file
from vepcli.errors import UserError
from vepcli.features import feature_matrix
from vepcli.probe.cv import KINDS
from vepcli.probe.embeddings import EmbeddingIdentity
from vepcli.probe.model import FORMAT, FORMAT_VERSION, LAYOUTS, Probe

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def _allowed_types() -> set[str]:
    """Every type a vepcli probe file may contain beyond what skops trusts by default: nothing else loads."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    return {f"{t.__module__}.{t.__qualname__}" for t in (Pipeline, StandardScaler, SVC, LogisticRegression)}


def save_probe(probe: Probe, path: str | Path) -> Path:
    """Write the probe with skops through the atomic writer: a temporary name beside `path`, renamed into place."""
    import skops.io as sio

    path = Path(path)
    if not path.parent.exists():
        raise UserError(f"the output folder {path.parent} does not exist")
    with atomic_file(path) as tmp:
        sio.dump(
            {"format": FORMAT, "meta_json": json.dumps(probe.meta, sort_keys=True), "pipeline": probe.pipeline}, tmp
        )
    probe.path = str(path)
    return path


MAX_D_MODEL = 16_384  # as modelcheck's config rules
MAX_PROBE_BYTES = 1 << 32  # uncompressed members of a probe file: far above any real probe (support vectors)


def load_probe(path: str | Path) -> Probe:
    """Load a probe file made by `vepcli probe train`; refuse any file holding types outside the allow-list.

    Never runs pickle (skops, with vepcli's allow-list checked before loading). A damaged, truncated or
    foreign file, whatever the damage, is a UserError in one line, never a traceback."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"probe file {path} does not exist")
    try:
        return _load_probe(path)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to read a probe file means the file is not one
        why = " ".join(f"{type(err).__name__}: {err}".split())[:160]
        raise UserError(
            f"{path} is not a skops probe file, or it is damaged or truncated ({why}); copy it again "
            "or make one with `vepcli probe train`"
        ) from None


def _load_probe(path: Path) -> Probe:
    import zipfile

    import skops.io as sio

    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if sum(i.file_size for i in infos) > MAX_PROBE_BYTES:
            raise UserError(
                f"{path} is not a vepcli probe (its members unpack to more than {MAX_PROBE_BYTES >> 30} GiB)"
            )
        bad = zf.testzip()  # every member's CRC: flipped bytes are found here, not halfway through loading
        if bad is not None:
            raise UserError(f"{path} is damaged (member {bad} fails its CRC check); copy it again")
        schema = json.loads(zf.read("schema.json"))
        foreign = sorted({i.filename for i in infos} - {"schema.json"} - _schema_files(schema))
        if foreign:
            raise UserError(
                f"{path} is not a vepcli probe (it holds members skops did not write: {', '.join(foreign[:3])})"
            )
    untrusted = sio.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - _allowed_types())
    if refused:
        raise UserError(
            f"{path} holds types a vepcli probe never contains ({', '.join(refused[:5])}); not loading "
            "it: train the probe again with `vepcli probe train`"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # sklearn's version warning: we check versions below
        obj = sio.load(path, trusted=list(untrusted))
    return Probe(_checked_pipeline(obj, path), _checked_meta(obj, path), str(path))


def _schema_files(node: Any) -> set[str]:
    """The zip members a skops schema refers to (arrays are stored as `file` members)."""
    if isinstance(node, dict):
        found = {node["file"]} if isinstance(node.get("file"), str) else set()
        for value in node.values():
            found |= _schema_files(value)
        return found
    if isinstance(node, list):
        return set().union(*(_schema_files(v) for v in node)) if node else set()
    return set()


def _checked_pipeline(obj: Any, path: Path) -> Pipeline:
    from sklearn.pipeline import Pipeline

    pipeline = obj.get("pipeline") if isinstance(obj, dict) else None
    allowed = _allowed_types()
    if not isinstance(pipeline, Pipeline) or any(
        f"{type(s).__module__}.{type(s).__qualname__}" not in allowed for _, s in pipeline.steps
    ):
        raise UserError(f"{path} is not a vepcli probe (no scaler + classifier pipeline inside)")
    return pipeline


def _checked_meta(obj: dict, path: Path) -> dict[str, Any]:
    import sklearn

    if obj.get("format") != FORMAT or not isinstance(obj.get("meta_json"), str):
        raise UserError(f"{path} is not a vepcli probe (format marker missing)")
    meta = json.loads(obj["meta_json"])
    version = meta.get("format_version", 0) if isinstance(meta, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise UserError(
            f"{path} is a probe format {meta['format_version']} file; this vepcli reads up to "
            f"{FORMAT_VERSION}: upgrade vepcli"
        )
    _check_meta_fields(meta, path)
    n_in = getattr(obj["pipeline"], "n_features_in_", None)
    d = meta["embedding"]["d_model"]
    expected = feature_matrix(np.zeros((1, d)), np.zeros((1, d)), meta["features"]["layout"], LAYOUTS).shape[1]
    expected += sum(len(levels) for levels in meta["covariates"].values())
    if not n_in == meta["features"]["n_features"] == expected:
        raise UserError(
            f"{path} is damaged: its classifier takes {n_in} features, its metadata says "
            f"{meta['features']['n_features']}"
        )
    if meta.get("sklearn_version") != sklearn.__version__:
        warnings.warn(
            f"probe {path} was made with scikit-learn {meta.get('sklearn_version')}, this is "
            f"{sklearn.__version__}; predictions may differ slightly",
            stacklevel=2,
        )
    return meta


def _check_meta_fields(meta: Any, path: Path) -> None:
    """The metadata fields prediction and the commands read, with their types: else one line naming the field."""

    def bad(field_name: str) -> UserError:
        return UserError(f"{path} is not a vepcli probe (its metadata field {field_name} is missing or wrong)")

    if not isinstance(meta, dict):
        raise bad("(the whole record)")
    number = (int, float)
    checks = [
        ("kind", lambda m: m["kind"] in KINDS),
        ("features.layout", lambda m: m["features"]["layout"] in LAYOUTS),
        ("features.n_features", lambda m: type(m["features"]["n_features"]) is int and m["features"]["n_features"] > 0),
        ("label.column", lambda m: isinstance(m["label"]["column"], str)),
        ("label.classes", lambda m: isinstance(m["label"]["classes"], list) and len(m["label"]["classes"]) == 2),
        (
            "covariates",
            lambda m: isinstance(m["covariates"], dict) and all(isinstance(v, list) for v in m["covariates"].values()),
        ),
        (
            "embedding",
            lambda m: (
                isinstance(m["embedding"], dict)
                and set(m["embedding"]) <= set(EmbeddingIdentity.__dataclass_fields__)
                and all(type(m["embedding"][k]) is int for k in ("window", "pool", "d_model"))
                and 0 < m["embedding"]["d_model"] <= MAX_D_MODEL
                and isinstance(m["embedding"]["config_hash"], str)
            ),
        ),
        ("cv.mean_auroc", lambda m: isinstance(m["cv"]["mean_auroc"], number)),
        (
            "calibration",
            lambda m: m["kind"] != "svm" or all(isinstance(m["calibration"][k], number) for k in ("a", "b")),
        ),
    ]
    for name, ok in checks:
        try:
            good = ok(meta)
        except (KeyError, TypeError):
            good = False
        if not good:
            raise bad(name)
