"""`vepcli score` end to end: variants -> checks -> windows -> engine -> scores -> output.

Variants are processed in blocks of BLOCK consecutive records. A block is the unit of work, of
ref-window sharing and of resume: the same block always gets the same batches, so a resumed run
writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vepcli import __version__
from vepcli.errors import UserError
from vepcli.genome import Genome
from vepcli.infer import Engine, Request
from vepcli.modelcheck import load_checked
from vepcli.modelinfo import config_hash, file_sha256
from vepcli.nn.hub import default_model
from vepcli.outpath import check_output_path
from vepcli.output import PartialStore, output_format, write_output
from vepcli.scores import POOL_DEFAULT, SCORE_NAMES, emb_cos, emb_l2, llr, pool_span
from vepcli.tables import RESERVED_COLUMNS
from vepcli.variants import REF_MISMATCH, Variant, check_against_reference, read_variants
from vepcli.windows import DEFAULT_MAX_N_FRACTION, build_windows

BLOCK = 64  # variants per unit of work and of resume
MAX_WINDOW = 131_072
SCORE_DESCRIPTIONS = {
    "llr": "Masked log-likelihood ratio log p(alt) - log p(ref) at the changed positions, strand-averaged "
    "(SNVs and MNVs; negative = alt less likely than ref)",
    "emb_l2": "Euclidean distance between pooled ref and alt embeddings (>= 0; larger = bigger effect)",
    "emb_cos": "Cosine distance 1 - cos(ref, alt) between pooled embeddings (larger = bigger effect)",
    "probe": "Probability of the positive class from the probe given with --probe",
    "finetune": "Probability from the head of the fine-tuned model given with --model",
}


@dataclass
class ScoreSettings:
    """Everything that changes the numbers or the set of rows: recorded in outputs, checked on resume."""

    model: str | None = None
    window: int | None = None
    pool: int = POOL_DEFAULT
    scores: tuple[str, ...] = SCORE_NAMES
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
    # not part of the numbers' identity:
    batch_size: int | None = None  # None: the engine's default for the device
    device: str = "auto"
    extra_meta: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("batch_size", "device", "extra_meta"):
            d.pop(key)
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
    unknown = [x for x in s.scores if x not in SCORE_NAMES]
    if unknown:
        raise UserError(f"unknown score(s) {', '.join(unknown)}; choose from {', '.join(SCORE_NAMES)}")
    if not s.scores and not (s.embeddings or s.probe):
        raise UserError(f"--scores is empty; choose from {', '.join(SCORE_NAMES)}")
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


class Scorer:
    """Turns blocks of checked variants into output rows with the engine."""

    def __init__(
        self, engine: Engine, genome: Genome, settings: ScoreSettings, window: int, probe=None, head=None
    ) -> None:
        self.engine, self.genome, self.settings, self.window = engine, genome, settings, window
        self.probe, self.head = probe, head
        self.want_emb = (
            settings.embeddings
            or probe is not None
            or head is not None
            or any(s in settings.scores for s in ("emb_l2", "emb_cos"))
        )
        self.want_llr = "llr" in settings.scores

    def score_block(self, block: list[Variant], progress=None) -> list[dict[str, Any]]:
        s, W = self.settings, self.window
        windows = build_windows(block, self.genome, W, share=s.share_ref, max_n_fraction=s.max_n_fraction)
        span = pool_span(W, W // 2, s.pool)
        requests: list[Request] = []
        ref_req: dict[int, int] = {}
        alt_req: list[int | None] = []
        llr_req: list[int | None] = []
        masked: dict[tuple[int, int, int], int] = {}
        for i, v in enumerate(windows.variants):
            slot = windows.ref_index[i]
            if self.want_emb:
                if slot not in ref_req:
                    ref_req[slot] = len(requests)
                    requests.append(Request(windows.ref_seqs[slot], pool=span))
                alt_req.append(len(requests))
                requests.append(Request(windows.alt_seqs[i], pool=span))
            changed = windows.changed[i]
            if self.want_llr and len(changed) == len(v.norm_ref):
                # the masked window is the same for every allele at a site: one pass serves them all
                key = (slot, changed.start, changed.stop) if s.share_ref else (i, changed.start, changed.stop)
                if key not in masked:
                    masked[key] = len(requests)
                    positions = tuple(changed)
                    requests.append(Request(windows.ref_seqs[slot], logp_at=positions, mask=positions))
                llr_req.append(masked[key])
            else:
                llr_req.append(None)
        results = self.engine.run(requests, progress)
        scored: dict[int, dict[str, Any]] = {}
        for i, v in enumerate(windows.variants):
            row: dict[str, Any] = {}
            if self.want_emb:
                ref_vec = results[ref_req[windows.ref_index[i]]].pooled
                alt_vec = results[alt_req[i]].pooled
                if "emb_l2" in s.scores:
                    row["emb_l2"] = emb_l2(ref_vec, alt_vec)
                if "emb_cos" in s.scores:
                    row["emb_cos"] = emb_cos(ref_vec, alt_vec)
                if s.embeddings:
                    row["ref_emb"], row["alt_emb"] = ref_vec.tolist(), alt_vec.tolist()
            if self.want_llr:
                if llr_req[i] is not None:
                    row["llr"] = llr(results[llr_req[i]].logp, v.norm_ref, v.norm_alt)
                elif v.kind in ("snv", "mnv"):
                    row["reason"] = f"llr needs the whole allele ({len(v.norm_ref)} bp) inside the window's right half"
                else:
                    row["reason"] = f"llr is defined for SNVs and MNVs only; this allele is {v.kind}"
            scored[v.index] = row
        if (self.probe is not None or self.head is not None) and windows.variants:
            self._add_supervised(windows, results, ref_req, alt_req, scored)
        return [self._row(v, scored.get(v.index, {})) for v in block]

    def _add_supervised(self, windows, results, ref_req, alt_req, scored) -> None:
        """The probe's and the fine-tuned head's probabilities, from the pooled vectors already computed."""
        import numpy as np
        import pandas as pd

        ref = np.stack([results[ref_req[slot]].pooled.numpy() for slot in windows.ref_index])
        alt = np.stack([results[i].pooled.numpy() for i in alt_req])
        extras = [v.extra for v in windows.variants]
        columns = {}
        if self.probe is not None:
            covariates = pd.DataFrame(extras)
            columns["probe"] = self.probe.predict_proba(ref, alt, covariates if len(covariates.columns) else None)
        if self.head is not None:
            columns["finetune"] = self.head(ref, alt, extras)
        for name, values in columns.items():
            for v, p in zip(windows.variants, values, strict=True):
                scored[v.index][name] = float(p)

    def _row(self, v: Variant, values: dict[str, Any]) -> dict[str, Any]:
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
        row.update({name: values.get(name) for name in output_scores(self.settings)})
        if self.settings.embeddings:
            row["ref_emb"], row["alt_emb"] = values.get("ref_emb"), values.get("alt_emb")
        for key, value in v.extra.items():
            row[key] = None if isinstance(value, float) and value != value else _plain(value)
        return row


def output_scores(settings: ScoreSettings) -> tuple[str, ...]:
    """Score columns of the output: the zero-shot ones asked for, then the probe's and the head's."""
    return settings.scores + (("probe",) if settings.probe else ()) + (("finetune",) if settings.finetune else ())


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


def score_file(
    variants_path: str,
    fasta: str,
    output: str,
    settings: ScoreSettings,
    output_type: str | None = None,
    resume: bool = False,
    quiet: bool = False,
) -> Path:
    """Score every ALT of `variants_path` and write `output`; returns the output path."""
    check_settings(settings)
    out = check_output_path(output, [variants_path, fasta, settings.probe, settings.model])
    fmt = output_format(output, output_type)
    if settings.embeddings and fmt not in ("parquet", "npz"):
        raise UserError(f"embeddings need a .parquet or .npz output, not {fmt}")
    model_path = settings.model or default_model()
    model_dir, model, weights_digest = load_checked(model_path)
    window = resolve_window(settings.window, model.config.max_length)
    genome = Genome(fasta)
    model_hash = config_hash(model.config.to_dict())
    meta = {
        "version": __version__,
        "variants": _file_identity(variants_path, digest=True),
        "fasta": _file_identity(fasta),
        "model": {"path": str(model_dir), "config_hash": model_hash, "weights_sha256": weights_digest},
        "window": window,
        "settings": settings.identity(),
        "format": fmt,
    }
    probe = None
    if settings.probe:
        from vepcli.probe import load_probe

        probe = load_probe(settings.probe)
        probe.check_compatible(
            model_hash, window, settings.pool, weights_sha256=weights_digest, strand_average=settings.strand_average
        )
        meta["probe"] = {"path": os.path.abspath(settings.probe), "sha256": file_sha256(Path(settings.probe))}
    from vepcli.finetune import ScoreHead

    head = ScoreHead.load(model_dir, window, settings.pool, settings.strand_average)
    settings.finetune = head is not None
    if head is not None:
        meta["finetune"] = {"path": str(model_dir), "head_sha256": head.meta["model"]["head_sha256"]}
    store = PartialStore(out, meta, resume)
    engine = Engine(model, settings.device, settings.precision, settings.batch_size, settings.strand_average)
    scorer = Scorer(engine, genome, settings, window, probe, head)
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(desc="scoring", unit=" variants", file=sys.stderr, dynamic_ncols=True, initial=len(store.rows))
    try:
        _run_blocks(store, scorer, _checked(settings, variants_path, genome), bar)
    except UserError:
        store.finish()  # bad input: nothing worth resuming; a kill or Ctrl-C keeps the store for --resume
        raise
    finally:
        if bar is not None:
            bar.close()
        store.close()
    extra_columns = list(dict.fromkeys(k for r in store.rows for k in r if k not in RESERVED_COLUMNS))
    command = " ".join(["vepcli", *sys.argv[1:]]) if sys.argv else "vepcli score"
    meta_lines = [
        f"##vepcli_version={__version__}",
        f"##vepcli_command={command}",
        f"##vepcli_model=<path={model_dir},arch={model.config.arch},d_model={model.config.d_model},"
        f"n_layer={model.config.n_layer},config_hash={model_hash},weights_sha256={weights_digest[:16]}>",
        f"##vepcli_window={window}",
        f"##vepcli_scan={engine.scan}",
        f"##vepcli_pool={settings.pool}",
        f"##vepcli_strand_average={str(settings.strand_average).lower()}",
        f"##vepcli_scores={','.join(output_scores(settings))}",
        f"##vepcli_settings_hash={_settings_hash(meta)}",
        f"##vepcli_input_sha256={meta['variants']['sha256'][:16]}",
        f"##vepcli_fasta_sha256={genome.contigs_sha256()[:16]}",
    ]
    if settings.shard:
        meta_lines.append(f"##vepcli_shard={settings.shard[0]}/{settings.shard[1]}")
    contigs = [(c, genome.length(c)) for c in genome.contigs]
    used = {r["chrom"] for r in store.rows}
    contigs = _contig_lines(contigs, used, genome)
    if settings.embeddings:
        meta_lines.append(
            f"##vepcli_embedding=<d_model={model.config.d_model},pool={settings.pool},"
            f"config_hash={model_hash},window={window}>"
        )
    if settings.probe:
        meta_lines.append(f"##vepcli_probe=<path={settings.probe},sha256={meta['probe']['sha256'][:16]}>")
    if head is not None:
        meta_lines.append(head.header_line())
    descriptions = {**SCORE_DESCRIPTIONS, **({"finetune": head.description} if head is not None else {})}
    try:
        write_output(
            out,
            fmt,
            store.rows,
            output_scores(settings),
            descriptions,
            meta_lines,
            contigs,
            extra_columns,
            vectors=("ref_emb", "alt_emb") if settings.embeddings else (),
        )
    except OSError as err:  # the rows are all in the store: --resume writes the file without scoring again
        raise UserError(
            f"cannot write {out} ({err.strerror or err}); every row is kept in {store.dir}: fix that "
            "and rerun with --resume to write it"
        ) from None
    store.finish()
    return out


def _run_blocks(store: PartialStore, scorer: Scorer, variants: Iterator[Variant], bar) -> None:
    start = 0  # row of the store where the current block starts
    b = -1
    for b, block in enumerate(_blocks(variants, BLOCK)):
        if b < store.blocks_done:
            store.check_block(b, start, [v.index for v in block])
            start += len(block)
            continue
        store.add_block(b, scorer.score_block(block))
        if bar is not None:
            bar.update(len(block))
        _test_abort_hook(b)
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


def _test_abort_hook(block: int) -> None:
    """VEPCLI_ABORT_AFTER_BLOCK=k ends the process at once after block k, as a kill would (for tests)."""
    stop = os.environ.get("VEPCLI_ABORT_AFTER_BLOCK")
    if stop is not None and block >= int(stop):
        os._exit(137)
