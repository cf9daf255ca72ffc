"""One block of variants -> windows -> engine requests -> score values, for the scores a run asks for.

The requests follow from what the registered scores need (`Score.needs`): pooled ref and alt vectors
(one ref request per shared ref window), and the masked log-probabilities at the changed positions (one
masked pass per site: every allele of an SNV/MNV site reads the same masked window).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vepcli.genome import Genome
from vepcli.infer import Engine, Request, Result
from vepcli.scoring.registry import MASKED_LOGP, POOLED, Empty, ScoreInputs, get, needs
from vepcli.scoring.supervised import SupervisedModel, predict_all
from vepcli.variants import Variant
from vepcli.windows import WindowBatch, build_windows


@dataclass(frozen=True)
class BlockSettings:
    """The parts of a run's settings that shape its requests and rows."""

    window: int
    span: tuple[int, int]  # the pooling span (`pool_span`)
    scores: tuple[str, ...]  # zero-shot scores, in column order
    share_ref: bool = True
    max_n_fraction: float = 1.0
    embeddings: bool = False  # keep the pooled vectors as `ref_emb`/`alt_emb`


@dataclass
class _Plan:
    """Which request answers what, for each allele of the block's windows."""

    requests: list[Request] = field(default_factory=list)
    ref: dict[int, int] = field(default_factory=dict)  # ref window slot -> request
    alt: list[int] = field(default_factory=list)  # allele -> its alt window's request
    masked: list[int | None] = field(default_factory=list)  # allele -> its masked pass, if any

    def add(self, request: Request) -> int:
        self.requests.append(request)
        return len(self.requests) - 1


class BlockScorer:
    """Scores blocks of checked variants with an engine: values by variant index."""

    def __init__(
        self, engine: Engine, genome: Genome, settings: BlockSettings, supervised: Sequence[SupervisedModel] = ()
    ) -> None:
        self.engine, self.genome, self.settings, self.supervised = engine, genome, settings, tuple(supervised)
        wanted = needs(settings.scores)
        self.want_pooled = POOLED in wanted or settings.embeddings or bool(self.supervised)
        self.want_logp = MASKED_LOGP in wanted

    def score_block(
        self, block: list[Variant], progress: Callable[[int], None] | None = None
    ) -> dict[int, dict[str, Any]]:
        """{variant index: {score name or ref_emb/alt_emb: value, reason: why a score is empty}}."""
        s = self.settings
        windows = build_windows(block, self.genome, s.window, share=s.share_ref, max_n_fraction=s.max_n_fraction)
        plan = self._plan(windows)
        results = self.engine.run(plan.requests, progress)
        scored = {v.index: self._values(windows, i, plan, results) for i, v in enumerate(windows.variants)}
        if self.supervised and windows.variants:
            self._add_supervised(windows, plan, results, scored)
        return scored

    def _plan(self, windows: WindowBatch) -> _Plan:
        plan = _Plan()
        masked: dict[tuple[int, int, int], int] = {}
        for i, v in enumerate(windows.variants):
            slot = windows.ref_index[i]
            if self.want_pooled:
                if slot not in plan.ref:
                    plan.ref[slot] = plan.add(Request(windows.ref_seqs[slot], pool=self.settings.span))
                plan.alt.append(plan.add(Request(windows.alt_seqs[i], pool=self.settings.span)))
            changed = windows.changed[i]
            if self.want_logp and len(changed) == len(v.norm_ref):
                key = (slot if self.settings.share_ref else i, changed.start, changed.stop)
                if key not in masked:
                    positions = tuple(changed)
                    masked[key] = plan.add(Request(windows.ref_seqs[slot], logp_at=positions, mask=positions))
                plan.masked.append(masked[key])
            else:
                plan.masked.append(None)
        return plan

    def _values(self, windows: WindowBatch, i: int, plan: _Plan, results: list[Result]) -> dict[str, Any]:
        v = windows.variants[i]
        ref_vec = results[plan.ref[windows.ref_index[i]]].pooled if self.want_pooled else None
        alt_vec = results[plan.alt[i]].pooled if self.want_pooled else None
        masked = plan.masked[i]
        inputs = ScoreInputs(
            v.kind, v.norm_ref, v.norm_alt, ref_vec, alt_vec, None if masked is None else results[masked].logp
        )
        row: dict[str, Any] = {}
        for name in self.settings.scores:
            value = get(name).compute(inputs)
            if isinstance(value, Empty):
                row.setdefault("reason", value.reason)
            else:
                row[name] = value
        if self.settings.embeddings:
            row["ref_emb"], row["alt_emb"] = ref_vec.tolist(), alt_vec.tolist()
        return row

    def _add_supervised(self, windows: WindowBatch, plan: _Plan, results: list[Result], scored) -> None:
        """Every supervised model's probabilities, from the pooled vectors already computed: one call."""
        import numpy as np

        ref = np.stack([results[plan.ref[slot]].pooled.numpy() for slot in windows.ref_index])
        alt = np.stack([results[i].pooled.numpy() for i in plan.alt])
        extras = [v.extra for v in windows.variants]
        for name, values in predict_all(self.supervised, ref, alt, extras).items():
            for v, p in zip(windows.variants, values, strict=True):
                scored[v.index][name] = p
