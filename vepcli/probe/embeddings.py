"""Embeddings in: `vepcli embed` output (.parquet or .npz) and the identity of the model that made them.

A probe is only meaningful on embeddings of the model, window, pooling and strand handling it was trained
on, so the identity is read from the file's header lines together with the vectors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vepcli.defaults import added_setting
from vepcli.errors import UserError
from vepcli.runheader import RunHeader, embedding_fields

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class EmbeddingIdentity:
    """What made a set of embeddings: a probe only makes sense on embeddings with the same identity."""

    config_hash: str
    window: int
    pool: int
    d_model: int
    strand_average: bool = True
    weights_sha256: str = "unknown"
    arch: str = "unknown"
    model_path: str = ""
    echo: bool = added_setting(False)  # echo embeddings (`--echo`): the second copy's states of [x ; x]


@dataclass
class Embeddings:
    """Rows of a `vepcli embed` output that have embeddings, with their other columns and identity."""

    table: pd.DataFrame  # every non-vector column, rows aligned with ref/alt
    ref: np.ndarray  # (n, d) float32
    alt: np.ndarray  # (n, d) float32
    identity: EmbeddingIdentity
    skipped: int = 0  # rows without embeddings (status not ok)
    path: str = ""


def parse_identity(lines: list[str], source: str = "embeddings") -> EmbeddingIdentity:
    """The identity recorded in `vepcli embed` header lines (##vepcli_embedding, ##vepcli_model, ...)."""
    emb = embedding_fields(lines)
    if emb is None:
        raise UserError(f"{source} has no ##vepcli_embedding header; make it with `vepcli embed`")
    run = RunHeader.from_lines(lines, source)
    try:
        return EmbeddingIdentity(
            config_hash=emb["config_hash"],
            window=int(emb["window"]),
            pool=int(emb["pool"]),
            d_model=int(emb["d_model"]),
            strand_average=run.strand_average is not False,
            weights_sha256=run.model.weights_sha256 if run.model else "unknown",
            arch=run.model.arch if run.model else "unknown",
            model_path=run.model.path if run.model else "",
            echo=run.echo,
        )
    except (KeyError, ValueError) as err:
        raise UserError(
            f"{source}: malformed ##vepcli_embedding header ({err}); make it again with `vepcli embed`"
        ) from None


def _read_parquet(path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise UserError(f"{path}: not a readable parquet file ({err})") from None
    meta = (table.schema.metadata or {}).get(b"vepcli")
    lines = json.loads(meta) if meta else []
    if "ref_emb" not in table.column_names or "alt_emb" not in table.column_names:
        raise UserError(f"{path} has no ref_emb/alt_emb columns; make it with `vepcli embed`")
    vectors = [_vector_column(table.column("ref_emb")), _vector_column(table.column("alt_emb"))]
    frame = table.drop_columns(["ref_emb", "alt_emb"]).to_pandas()
    return frame, vectors[0], vectors[1], lines


def _vector_column(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed-size list column -> (n, d) float32, NaN rows where the value is null."""
    import pyarrow as pa

    column = column.combine_chunks()
    rows = None if pa.types.is_fixed_size_list(column.type) else column.to_pylist()
    d = column.type.list_size if rows is None else next((len(r) for r in rows if r is not None), 0)
    out = np.full((len(column), d), np.nan, dtype=np.float32)
    valid = ~column.is_null().to_numpy(zero_copy_only=False)
    if rows is not None:
        out[valid] = [r for r in rows if r is not None]
    elif valid.any():
        out[valid] = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, d)  # flatten skips null rows
    return out


def _read_npz(path: Path) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, list[str]]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if "ref_emb" not in arrays or "alt_emb" not in arrays:
        raise UserError(f"{path} has no ref_emb/alt_emb arrays; make it with `vepcli embed`")
    lines = [str(x) for x in arrays.pop("meta", [])]
    ref, alt = arrays.pop("ref_emb").astype(np.float32), arrays.pop("alt_emb").astype(np.float32)
    return pd.DataFrame(arrays), ref, alt, lines


def read_embeddings(path: str | Path) -> Embeddings:
    """Read `vepcli embed` output (.parquet or .npz); keep the rows that have both embeddings."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    reader = _read_npz if path.suffix == ".npz" else _read_parquet
    frame, ref, alt, lines = reader(path)
    identity = parse_identity(lines, str(path))
    ok = ~(np.isnan(ref).any(axis=1) | np.isnan(alt).any(axis=1)) if len(ref) else np.zeros(0, dtype=bool)
    if "status" in frame:
        ok &= frame["status"].to_numpy() == "ok"
    return Embeddings(frame[ok].reset_index(drop=True), ref[ok], alt[ok], identity, int((~ok).sum()), str(path))
