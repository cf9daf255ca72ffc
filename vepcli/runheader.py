"""The run header: the `##vepcli_*` lines that say how an output was made, written and read in one place.

`vepcli score` and `embed` write them (VCF meta lines, TSV `##` lines, parquet metadata); `vepcli merge`
reads them to check that parts belong together; `vepcli probe` reads them to know which model made a set
of embeddings. A `RunHeader` holds full sha256 digests; its lines show the first `DIGEST_SHOWN` hex digits
(what vepcli has always written), so a header read back holds those prefixes and digests are compared
with `same_digest`, never with `==`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from vepcli.errors import UserError

PREFIX = "##vepcli_"
DIGEST_SHOWN = 16  # hex digits of a sha256 a header line shows
SHARD = re.compile(r"^(\d+)/(\d+)$")
_FIELD = re.compile(r"(\w+)=(.*?)(?=,\w+=|$)")


def short(digest: str) -> str:
    """The part of a digest a header line shows."""
    return digest[:DIGEST_SHOWN]


def same_digest(a: str, b: str) -> bool:
    """Whether two sha256 digests name the same bytes, either one full or the prefix a header line shows."""
    n = min(len(a), len(b))
    return n >= DIGEST_SHOWN and a[:n].lower() == b[:n].lower()


def record_fields(value: str) -> dict[str, str]:
    """`<a=1,b=x,y>` -> {a: 1, b: x,y}: a value runs to the next `,key=`, so paths may hold commas."""
    body = value.strip().removeprefix("<").removesuffix(">")
    return {m.group(1): m.group(2) for m in _FIELD.finditer(body)}


@dataclass(frozen=True)
class Record:
    """One `##vepcli_<key>=<k=v,...>` line: the probe's, the fine-tuned head's or any plug-in's."""

    key: str
    fields: dict[str, str]

    def to_line(self) -> str:
        return f"{PREFIX}{self.key}=<" + ",".join(f"{k}={v}" for k, v in self.fields.items()) + ">"


@dataclass(frozen=True)
class ModelRecord:
    """The `##vepcli_model` line: which backbone made the numbers."""

    path: str
    arch: str
    d_model: int
    n_layer: int
    config_hash: str
    weights_sha256: str  # full when made by this run; the shown prefix when read from a file

    def to_line(self) -> str:
        return Record(
            "model",
            {
                "path": self.path,
                "arch": self.arch,
                "d_model": str(self.d_model),
                "n_layer": str(self.n_layer),
                "config_hash": self.config_hash,
                "weights_sha256": short(self.weights_sha256),
            },
        ).to_line()


@dataclass(frozen=True)
class RunHeader:
    """How an output was made. Fields are None when a file (an older vepcli's, or a damaged one) lacks
    their line; `to_lines` leaves such lines out. Digests are full when made by this run."""

    version: str | None = None
    command: str | None = None
    model: ModelRecord | None = None
    window: int | None = None
    scan: str | None = None
    pool: int | None = None
    strand_average: bool | None = None
    scores: tuple[str, ...] | None = None
    settings_hash: str | None = None
    input_sha256: str | None = None
    fasta_sha256: str | None = None
    shard: tuple[int, int] | None = None
    embedding: bool = False  # the output holds pooled ref/alt vectors (`vepcli embed`)
    supervised: tuple[Record, ...] = field(default_factory=tuple)  # ##vepcli_probe, ##vepcli_finetune
    # The lines below are written only when they differ from what every earlier output meant (a masked
    # LM, plain states), so outputs of such runs keep their bytes; a file without them means just that.
    objective: str = "masked"  # the model's training objective (`Backbone.objective`): ##vepcli_objective
    echo: bool = False  # pooled vectors from echo passes (`--echo`): ##vepcli_echo=true
    # (score, meaning) of the scores whose meaning on this objective is not their plain one: ##vepcli_score
    score_notes: tuple[tuple[str, str], ...] = ()

    def to_lines(self) -> list[str]:
        """The header lines, in the order vepcli writes them."""
        plain = [
            ("version", self.version),
            ("command", self.command),
            ("model", self.model.to_line() if self.model else None),
            ("window", self.window),
            ("scan", self.scan),
            ("pool", self.pool),
            ("strand_average", None if self.strand_average is None else str(self.strand_average).lower()),
            ("objective", None if self.objective == "masked" else self.objective),
            ("echo", "true" if self.echo else None),
            ("scores", None if self.scores is None else ",".join(self.scores)),
            *(("score", self.score_record(name, text).to_line()) for name, text in self.score_notes),
            ("settings_hash", self.settings_hash),
            ("input_sha256", self.input_sha256 and short(self.input_sha256)),
            ("fasta_sha256", self.fasta_sha256 and short(self.fasta_sha256)),
            ("shard", self.shard and f"{self.shard[0]}/{self.shard[1]}"),
        ]
        lines = [v if k in ("model", "score") else f"{PREFIX}{k}={v}" for k, v in plain if v is not None]
        if self.embedding:
            lines.append(self.embedding_record().to_line())
        return lines + [r.to_line() for r in self.supervised]

    def embedding_record(self) -> Record:
        """The `##vepcli_embedding` line: what a probe trained on these vectors must be used with."""
        if self.model is None or self.window is None or self.pool is None:
            raise ValueError("an embedding header needs the model, window and pool")
        return Record(
            "embedding",
            {
                "d_model": str(self.model.d_model),
                "pool": str(self.pool),
                "config_hash": self.model.config_hash,
                "window": str(self.window),
            },
        )

    def score_record(self, name: str, description: str) -> Record:
        """A `##vepcli_score` line: a score's meaning on this run's model, in the words of its ##INFO line."""
        return Record("score", {"ID": name, "objective": self.objective, "Description": f'"{description}"'})

    def with_command(self, command: str) -> RunHeader:
        return replace(self, command=command)

    @classmethod
    def from_lines(cls, lines: list[str], source: str = "the file") -> RunHeader:
        """Parse the `##vepcli_*` lines among `lines` (other lines are skipped)."""
        heads = {}
        for line in lines:
            if line.startswith(PREFIX):
                key, _, value = line.removeprefix(PREFIX).partition("=")
                heads[key] = value
        records = {k: record_fields(v) for k, v in heads.items() if v.startswith("<")}
        return cls(
            version=heads.get("version"),
            command=heads.get("command"),
            model=_model(records.get("model")),
            window=_int(heads.get("window")),
            scan=heads.get("scan"),
            pool=_int(heads.get("pool")),
            strand_average=None if "strand_average" not in heads else heads["strand_average"] == "true",
            scores=None if "scores" not in heads else tuple(s for s in heads["scores"].split(",") if s),
            settings_hash=heads.get("settings_hash"),
            input_sha256=heads.get("input_sha256"),
            fasta_sha256=heads.get("fasta_sha256"),
            shard=_shard(heads.get("shard"), source),
            embedding="embedding" in heads,
            supervised=tuple(Record(k, records[k]) for k in ("probe", "finetune") if k in records),
            objective=heads.get("objective", "masked"),
            echo=heads.get("echo") == "true",
            score_notes=_score_notes(lines),
        )


def embedding_fields(lines: list[str]) -> dict[str, str] | None:
    """The fields of the `##vepcli_embedding` line among `lines`, or None without one."""
    line = next((x for x in reversed(lines) if x.startswith(f"{PREFIX}embedding=")), None)
    return None if line is None else record_fields(line.partition("=")[2])


def _score_notes(lines: list[str]) -> tuple[tuple[str, str], ...]:
    """(score, meaning) of the `##vepcli_score` lines among `lines` (there may be several: not in `heads`)."""
    fields = [record_fields(x.partition("=")[2]) for x in lines if x.startswith(f"{PREFIX}score=")]
    return tuple((f.get("ID", ""), f.get("Description", "").strip('"')) for f in fields)


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _model(fields: dict[str, str] | None) -> ModelRecord | None:
    if fields is None:
        return None
    return ModelRecord(
        path=fields.get("path", ""),
        arch=fields.get("arch", "unknown"),
        d_model=_int(fields.get("d_model")) or 0,
        n_layer=_int(fields.get("n_layer")) or 0,
        config_hash=fields.get("config_hash", ""),
        weights_sha256=fields.get("weights_sha256", "unknown"),
    )


def _shard(text: str | None, source: str) -> tuple[int, int] | None:
    if text is None:
        return None
    m = SHARD.match(text)
    if not m:
        line = f"{PREFIX}shard={text}"
        raise UserError(f"{source}: bad line {line!r}; expected ##vepcli_shard=I/N")
    return int(m[1]), int(m[2])
