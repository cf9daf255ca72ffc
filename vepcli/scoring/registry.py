"""The score registry: each score declares once its name, meaning, output type and what it needs.

Everything that lists scores reads it: `--scores` and its checks, the VCF `##INFO` lines and the
`##vepcli_scores` line, the TSV/parquet column types, `read_scores`, and the block scorer, which asks the
engine only for what the requested scores need. Importing this module loads neither torch nor numpy, so
the CLI's help stays quick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# What a score may need from the engine, per allele:
POOLED = "pooled"  # the ref and alt windows' last hidden states, mean-pooled over the span and strand-averaged
MASKED_LOGP = "masked_logp"  # log-probabilities at the changed positions, all [MASK]ed in one ref-window pass


@dataclass(frozen=True)
class Empty:
    """A score left empty for an allele, and why (the row's `reason` when the allele itself is fine)."""

    reason: str


@dataclass(frozen=True)
class ScoreInputs:
    """What the engine computed for one allele; a field a score did not ask for is None."""

    kind: str  # snv, mnv, ins, del, ... (`Variant.kind`)
    ref: str  # the normalised alleles
    alt: str
    ref_pooled: Any = None  # (d_model,) float32 tensor
    alt_pooled: Any = None
    masked_logp: Any = None  # (len(ref), vocab) float32 tensor; None where the allele is not all in the window


@dataclass(frozen=True)
class Score:
    """A score plug-in. `compute` is None for a supervised score, whose values come from a `SupervisedModel`."""

    name: str
    description: str  # meaning and sign: the VCF ##INFO Description, and the docs' wording
    needs: frozenset[str]
    compute: Callable[[ScoreInputs], float | Empty] | None = None
    info_type: str = "Float"  # VCF INFO Type
    dtype: str = "float64"  # TSV/parquet column type (pandas)
    default: bool = True  # in the default of `--scores`
    order: int = 50  # place in `--scores`' default and list of choices (then by name); columns follow --scores

    @property
    def supervised(self) -> bool:
        return self.compute is None


_SCORES: dict[str, Score] = {}


def _ordered() -> list[Score]:
    return sorted(_SCORES.values(), key=lambda s: (s.order, s.name))


def register(score: Score) -> Score:
    """Add a score; a name is registered once (unregister it first to replace it)."""
    if score.name in _SCORES:
        raise ValueError(f"a score named {score.name!r} is already registered")
    if not score.needs <= {POOLED, MASKED_LOGP}:
        raise ValueError(f"score {score.name!r} needs {sorted(score.needs)}; the engine gives {POOLED}, {MASKED_LOGP}")
    _SCORES[score.name] = score
    return score


def unregister(name: str) -> None:
    """Remove a score (a test's, or one to be replaced)."""
    del _SCORES[name]


def get(name: str) -> Score:
    return _SCORES[name]


def zero_shot_names() -> tuple[str, ...]:
    """The scores `--scores` may name, in column order."""
    return tuple(s.name for s in _ordered() if not s.supervised)


def default_names() -> tuple[str, ...]:
    """The default of `--scores`."""
    return tuple(s.name for s in _ordered() if not s.supervised and s.default)


def numeric_columns() -> tuple[str, ...]:
    """Every score column, zero-shot and supervised: what `read_scores` reads as numbers."""
    return tuple(s.name for s in _ordered())


def needs(names: Iterable[str]) -> frozenset[str]:
    """What the engine must compute for these scores."""
    return frozenset().union(*(_SCORES[n].needs for n in names))
