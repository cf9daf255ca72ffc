"""The score registry: each score declares once its name, meaning, output type and what it needs.

Everything that lists scores reads it: `--scores` and its checks, the VCF `##INFO` lines and the
`##vepcli_scores` line, the TSV/parquet column types, `read_scores`, and the block scorer, which asks the
engine only for what the requested scores need. Importing this module loads neither torch nor numpy, so
the CLI's help stays quick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vepcli.errors import UserError

# What a score may need from the engine, per allele:
POOLED = "pooled"  # the ref and alt windows' last hidden states, mean-pooled over the span and strand-averaged
MASKED_LOGP = "masked_logp"  # log-probabilities at the changed positions, all [MASK]ed in one ref-window pass
CAUSAL_LL = "causal_ll"  # causal-LM log-likelihoods of the ref and alt windows from their first difference on
# what the engine can give on a model of each training objective (`Backbone.objective`; nn.backbone.OBJECTIVES)
AVAILABLE = {"masked": frozenset({POOLED, MASKED_LOGP}), "causal": frozenset({POOLED, CAUSAL_LL})}


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
    ref_loglik: float | None = None  # causal LM: strand-averaged sum of log p(token t | tokens < t) over the
    alt_loglik: float | None = None  # positions from the windows' first difference on (per strand reading)


@dataclass(frozen=True)
class Reading:
    """What a score means, needs and computes on a model of one training objective."""

    description: str  # meaning and sign: the VCF ##INFO Description, and the docs' wording
    needs: frozenset[str]
    compute: Callable[[ScoreInputs], float | Empty] | None = None


@dataclass(frozen=True)
class Score:
    """A score plug-in. `compute` is None for a supervised score, whose values come from a `SupervisedModel`.

    `description`, `needs` and `compute` are its reading on any model; `objectives` replaces that reading on
    models of the objectives it names (`llr` is a masked-LM ratio on a masked model, a ratio of window
    log-likelihoods on a causal one). Read a score's meaning for a model with `on(objective)`."""

    name: str
    description: str
    needs: frozenset[str]
    compute: Callable[[ScoreInputs], float | Empty] | None = None
    info_type: str = "Float"  # VCF INFO Type
    dtype: str = "float64"  # TSV/parquet column type (pandas)
    default: bool = True  # in the default of `--scores`
    order: int = 50  # place in `--scores`' default and list of choices (then by name); columns follow --scores
    objectives: Mapping[str, Reading] = field(default_factory=dict)

    @property
    def supervised(self) -> bool:
        return self.compute is None

    def on(self, objective: str) -> Reading:
        """Its meaning, needs and computation on a model of this objective."""
        return self.objectives.get(objective) or Reading(self.description, self.needs, self.compute)


_SCORES: dict[str, Score] = {}


def _ordered() -> list[Score]:
    return sorted(_SCORES.values(), key=lambda s: (s.order, s.name))


def register(score: Score) -> Score:
    """Add a score; a name is registered once (unregister it first to replace it)."""
    if score.name in _SCORES:
        raise ValueError(f"a score named {score.name!r} is already registered")
    unknown = set(score.objectives) - set(AVAILABLE)
    if unknown:
        raise ValueError(f"score {score.name!r} has readings for {sorted(unknown)}; objectives are {sorted(AVAILABLE)}")
    gives = frozenset().union(*AVAILABLE.values())
    for reading in (Reading(score.description, score.needs, score.compute), *score.objectives.values()):
        if not reading.needs <= gives:
            raise ValueError(f"score {score.name!r} needs {sorted(reading.needs)}; the engine gives {sorted(gives)}")
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


def needs(names: Iterable[str], objective: str) -> frozenset[str]:
    """What the engine must compute for these scores on a model of `objective`; a score the model cannot
    give is one refusal line."""
    names = tuple(names)
    wanted = frozenset().union(*(_SCORES[n].on(objective).needs for n in names))
    missing = wanted - AVAILABLE.get(objective, frozenset())
    if missing:
        bad = [n for n in names if _SCORES[n].on(objective).needs & missing]
        raise UserError(
            f"--scores {','.join(bad)}: a {objective} LM cannot give {', '.join(sorted(missing))}; leave them out"
        )
    return wanted


def objective_notes(names: Iterable[str], objective: str) -> dict[str, str]:
    """The scores among `names` whose meaning on a model of `objective` is not their plain one, with that
    meaning: what output headers must say beside the score names (`##vepcli_score` lines)."""
    return {n: _SCORES[n].on(objective).description for n in names if objective in _SCORES[n].objectives}
