"""`vepcli score` end to end: variants -> checks -> windows -> engine -> scores -> output.

Variants are processed in blocks of BLOCK consecutive records. A block is the unit of work, of
ref-window sharing and of resume: the same block always gets the same batches, so a resumed run
writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vepcli import __version__
from vepcli.defaults import added_setting, recorded
from vepcli.errors import UserError
from vepcli.genome import Genome
from vepcli.infer import Engine
from vepcli.modelcheck import load_checked
from vepcli.modelinfo import config_hash, file_sha256
from vepcli.nn.hub import default_model
from vepcli.nn.strand import check_echo
from vepcli.outpath import check_output_path
from vepcli.output import PartialStore, output_format, write_output
from vepcli.runheader import ModelRecord, RunHeader
from vepcli.scores import POOL_DEFAULT, pool_span
from vepcli.scoring import SupervisedLoader, SupervisedModel, default_names, needs, objective_notes, zero_shot_names
from vepcli.scoring import get as get_score
from vepcli.scoring.block import BlockScorer, BlockSettings
from vepcli.tables import reserved_columns
from vepcli.variants import REF_MISMATCH, Variant, check_against_reference, read_variants
from vepcli.windows import DEFAULT_MAX_N_FRACTION

BLOCK = 64  # variants per unit of work and of resume
MAX_WINDOW = 131_072


@dataclass
class ScoreSettings:
    """Everything that changes the numbers or the set of rows: recorded in outputs, checked on resume."""

    model: str | None = None
    window: int | None = None
    pool: int = POOL_DEFAULT
    scores: tuple[str, ...] = field(default_factory=default_names)
    strand_average: bool = True
    share_ref: bool = True
    ref_mismatch: str = "skip"
    max_indel_len: int = 1000
    max_n_fraction: float = DEFAULT_MAX_N_FRACTION
    regions: str | None = None
    shard: tuple[int, int] | None = None  # (i, n), 1-based i
    precision: str = "fp32"
    embeddings: bool = False  # also keep the pooled ref and alt vectors (vepcli embed)
    probe: str | None = None  # a probe.skops whose probability becomes the `probe` score
    finetune: bool = False  # set when --model is a fine-tuned directory: its head gives the `finetune` score
    echo: bool = added_setting(False)  # causal models: pooled vectors from echo passes ([x ; x], the second copy's)
    # not part of the numbers' identity:
    batch_size: int | None = None  # None: the engine's default for the device
    device: str = "auto"
    extra_meta: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        for f in fields(self):
            if f.name in ("batch_size", "device", "extra_meta") or not recorded(self, f):
                d.pop(f.name)
        d["scores"] = list(self.scores)
        d["shard"] = list(self.shard) if self.shard else None
        return d


def _file_identity(path: str, digest: bool = False) -> dict[str, Any]:
    st = os.stat(path)
    ident = {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if digest:
        ident["sha256"] = file_sha256(path)
    return ident


def check_settings(s: ScoreSettings) -> None:
    """The rules the CLI's option types enforce, for callers of the Python API too."""
    limits = [
        ("window", s.window, 1, MAX_WINDOW),
        ("pool", s.pool, 0, None),
        ("batch_size", s.batch_size, 1, None),
        ("max_indel_len", s.max_indel_len, 1, None),
    ]
    for name, value, low, high in limits:
        if value is None and name in ("window", "max_indel_len", "batch_size"):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
            span = f"{low}..{high}" if high else f">= {low}"
            raise UserError(f"--{name.replace('_', '-')} {value!r} must be a whole number {span}")
    twice = sorted({x for x in s.scores if s.scores.count(x) > 1})
    if twice:
        raise UserError(f"--scores names {', '.join(twice)} twice; name each score once")
    known = zero_shot_names()
    unknown = [x for x in s.scores if x not in known]
    if unknown:
        raise UserError(f"unknown score(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if not s.scores and not (s.embeddings or s.probe):
        raise UserError(f"--scores is empty; choose from {', '.join(known)}")
    if not 0.0 <= s.max_n_fraction <= 1.0:
        raise UserError(f"max_n_fraction {s.max_n_fraction} must be between 0 and 1")


def _in_shard(v: Variant, shard: tuple[int, int] | None) -> bool:
    """Whole input records go to one shard: record number modulo N (see docs/snakemake.md)."""
    return shard is None or v.record % shard[1] == shard[0] - 1


def _blocks(variants: Iterator[Variant], size: int) -> Iterator[list[Variant]]:
    block: list[Variant] = []
    for v in variants:
        block.append(v)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


def _row(v: Variant, values: dict[str, Any], columns: tuple[str, ...], embeddings: bool) -> dict[str, Any]:
    """One output row: the allele, its status, its scores (None where empty) and its input's own columns."""
    row = {
        "index": v.index,
        "chrom": v.chrom,
        "pos": v.pos,
        "id": v.id,
        "ref": v.ref,
        "alt": v.alt,
        "status": v.status,
        "reason": v.reason or values.pop("reason", ""),
    }
    row.update({name: values.get(name) for name in columns})
    if embeddings:
        row["ref_emb"], row["alt_emb"] = values.get("ref_emb"), values.get("alt_emb")
    for key, value in v.extra.items():
        row[key] = None if isinstance(value, float) and value != value else _plain(value)
    return row


def _plain(value: Any) -> Any:
    """numpy scalars -> Python, so rows serialise to JSON."""
    return value.item() if hasattr(value, "item") else value


def _checked(settings: ScoreSettings, variants_path: str, genome: Genome) -> Iterator[Variant]:
    for v in read_variants(variants_path, settings.regions):
        if not _in_shard(v, settings.shard):
            continue
        check_against_reference(v, genome, settings.max_indel_len)
        if v.status == REF_MISMATCH and settings.ref_mismatch == "error":
            raise UserError(f"{variants_path} line {v.line}: {v.reason} (use --ref-mismatch skip to go on)")
        yield v


def resolve_window(requested: int | None, max_length: int | None) -> int:
    window = requested if requested is not None else (max_length or MAX_WINDOW)
    if not 1 <= window <= MAX_WINDOW:
        raise UserError(f"--window {window} is outside 1..{MAX_WINDOW}")
    return window


@dataclass
class _Run:
    """A run once its model, reference and supervised models are loaded: what scoring and writing need."""

    header: RunHeader  # without the command, scan and settings hash until the output is written
    meta: dict[str, Any]  # the run's identity: checked on --resume, hashed into ##vepcli_settings_hash
    model: Any
    genome: Genome
    supervised: tuple[SupervisedModel, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Score columns of the output: the zero-shot ones asked for, then the supervised ones."""
        return self.header.scores

    def descriptions(self) -> dict[str, str]:
        return {
            **{n: get_score(n).on(self.model.objective).description for n in self.columns},
            **{m.name: m.description for m in self.supervised},
        }


def score_file(
    variants_path: str,
    fasta: str,
    output: str,
    settings: ScoreSettings,
    output_type: str | None = None,
    resume: bool = False,
    quiet: bool = False,
    supervised: Sequence[SupervisedLoader] = (),
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Score every ALT of `variants_path` and write `output`; returns the output path.

    `supervised`: loaders of supervised scores (`vepcli.supervised.loaders(settings)` gives the probe of
    `settings.probe` and the head of a fine-tuned model). `progress(n)` is called after each block of n
    variants is stored (an exception there stops the run as Ctrl-C would: `resume=True` continues it)."""
    check_settings(settings)
    out = check_output_path(output, [variants_path, fasta, settings.probe, settings.model])
    fmt = output_format(output, output_type)
    if settings.embeddings and fmt not in ("parquet", "npz"):
        raise UserError(f"embeddings need a .parquet or .npz output, not {fmt}")
    run = _open_run(settings, variants_path, fasta, fmt, supervised)
    engine = Engine(
        run.model, settings.device, settings.precision, settings.batch_size, settings.strand_average, settings.echo
    )
    store = PartialStore(out, run.meta, resume)
    _score_all(store, run, engine, settings, variants_path, quiet, progress)
    header = replace(
        run.header,
        command=" ".join(["vepcli", *sys.argv[1:]]) if sys.argv else "vepcli score",
        scan=engine.scan,
        settings_hash=_settings_hash(run.meta),
    )
    _write(out, fmt, store, run, header, settings)
    store.finish()
    return out


def _open_run(
    settings: ScoreSettings, variants_path: str, fasta: str, fmt: str, loaders: Sequence[SupervisedLoader]
) -> _Run:
    """Load the model and the reference, record the run's identity, load its supervised models."""
    model_dir, model, weights_digest = load_checked(settings.model or default_model())
    check_echo(model, settings.echo)
    needs(settings.scores, model.objective)  # a score this model cannot give: one line, before any work
    window = resolve_window(settings.window, model.trained_length)
    genome = Genome(fasta)
    config_digest = config_hash(model.config.to_dict())
    record = ModelRecord(str(model_dir), model.arch, model.hidden_width, model.n_layer, config_digest, weights_digest)
    meta = {
        "version": __version__,
        "variants": _file_identity(variants_path, digest=True),
        "fasta": _file_identity(fasta),
        "model": {"path": str(model_dir), "config_hash": record.config_hash, "weights_sha256": weights_digest},
        "window": window,
        "settings": settings.identity(),
        "format": fmt,
    }
    header = RunHeader(
        version=__version__,
        model=record,
        window=window,
        pool=settings.pool,
        strand_average=settings.strand_average,
        input_sha256=meta["variants"]["sha256"],
        shard=settings.shard,
        embedding=settings.embeddings,
        objective=model.objective,
        echo=settings.echo,
        score_notes=tuple(objective_notes(settings.scores, model.objective).items()),
    )
    models = tuple(m for m in (load(header) for load in loaders) if m is not None)
    names = [m.name for m in models]
    if settings.probe and "probe" not in names:
        raise UserError("settings.probe needs its loader: pass supervised=vepcli.supervised.loaders(settings)")
    settings.finetune = "finetune" in names  # after `meta`, which records the settings as they were given
    meta.update({m.name: m.identity() for m in models})
    header = replace(
        header,
        scores=settings.scores + tuple(names),
        fasta_sha256=genome.contigs_sha256(),
        supervised=tuple(m.header_record() for m in models),
    )
    return _Run(header, meta, model, genome, models)


def _score_all(
    store: PartialStore, run: _Run, engine: Engine, settings: ScoreSettings, variants_path: str, quiet: bool, progress
) -> None:
    """Score the blocks the store does not hold yet (all of them unless resuming)."""
    window = run.header.window
    block_settings = BlockSettings(
        window,
        pool_span(window, window // 2, settings.pool),
        settings.scores,
        settings.share_ref,
        settings.max_n_fraction,
        settings.embeddings,
    )
    scorer = BlockScorer(engine, run.genome, block_settings, run.supervised)
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(desc="scoring", unit=" variants", file=sys.stderr, dynamic_ncols=True, initial=len(store.rows))
    done = [f for f in (bar.update if bar is not None else None, progress) if f is not None]
    try:
        _run_blocks(store, scorer, _checked(settings, variants_path, run.genome), run, done)
    except UserError:
        store.finish()  # bad input: nothing worth resuming; a kill or Ctrl-C keeps the store for --resume
        raise
    finally:
        if bar is not None:
            bar.close()
        store.close()


def _write(out: Path, fmt: str, store: PartialStore, run: _Run, header: RunHeader, settings: ScoreSettings) -> None:
    known = {*reserved_columns(), *run.columns}
    extra_columns = list(dict.fromkeys(k for r in store.rows for k in r if k not in known))
    used = {r["chrom"] for r in store.rows}
    contigs = _contig_lines([(c, run.genome.length(c)) for c in run.genome.contigs], used, run.genome)
    try:
        write_output(
            out,
            fmt,
            store.rows,
            run.columns,
            run.descriptions(),
            header.to_lines(),
            contigs,
            extra_columns,
            vectors=("ref_emb", "alt_emb") if settings.embeddings else (),
        )
    except OSError as err:  # the rows are all in the store: --resume writes the file without scoring again
        raise UserError(
            f"cannot write {out} ({err.strerror or err}); every row is kept in {store.dir}: fix that "
            "and rerun with --resume to write it"
        ) from None


def _run_blocks(store: PartialStore, scorer: BlockScorer, variants: Iterator[Variant], run: _Run, done) -> None:
    start = 0  # row of the store where the current block starts
    b = -1
    for b, block in enumerate(_blocks(variants, BLOCK)):
        if b < store.blocks_done:
            store.check_block(b, start, [v.index for v in block])
            start += len(block)
            continue
        values = scorer.score_block(block)
        store.add_block(b, [_row(v, values.get(v.index, {}), run.columns, scorer.settings.embeddings) for v in block])
        for report in done:
            report(len(block))
    if b + 1 < store.blocks_done:
        raise UserError(
            f"the resume folder {store.dir} holds more blocks than the input gives; rerun without "
            "--resume to start over"
        )


def _contig_lines(fasta_contigs, used, genome: Genome):
    """FASTA contigs (FASTA names and lengths), plus input names that differ (aliases, missing contigs)."""
    out = list(fasta_contigs)
    names = {c for c, _ in out}
    for name in sorted(used - names):
        resolved = genome.resolve(name)
        out.append((name, genome.length(resolved) if resolved else None))
    return out


def _settings_hash(meta: dict[str, Any]) -> str:
    """Model, window and settings that change numbers; `vepcli merge` refuses shards that differ."""
    import json

    keep = {
        "model": meta["model"]["config_hash"],
        "weights": meta["model"]["weights_sha256"],
        "window": meta["window"],
        "settings": {k: v for k, v in meta["settings"].items() if k not in ("regions", "shard")},
        "probe": meta.get("probe", {}).get("sha256"),
        "finetune": meta.get("finetune"),
    }
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]
