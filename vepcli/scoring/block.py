"""One block of variants -> windows -> engine requests -> score values, for the scores a run asks for.

The requests follow from what the registered scores need on the run's model (`Score.on(objective).needs`):
pooled ref and alt vectors (one ref request per shared ref window), the masked log-probabilities at the
changed positions (one masked pass per site: every allele of an SNV/MNV site reads the same masked
window), and causal log-likelihoods of the ref and alt windows from where they first differ (a shared
ref window's one request sums from each of its alleles' starts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vepcli.genome import Genome
from vepcli.infer import Engine, Request, Result
from vepcli.scoring.registry import CAUSAL_LL, MASKED_LOGP, POOLED, Empty, ScoreInputs, get, needs
from vepcli.scoring.supervised import SupervisedModel, predict_all
from vepcli.variants import Variant
from vepcli.windows import WindowBatch, build_windows, strand_starts


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
    ref_sum: list[int] = field(default_factory=list)  # allele -> its sum among its ref request's log-likelihoods

    def add(self, request: Request) -> int:
        self.requests.append(request)
        return len(self.requests) - 1

    def add_start(self, k: int, starts: tuple[int, int]) -> int:
        """Request k also sums from `starts`: the index of that sum in its results."""
        have = self.requests[k].loglik_from
        if starts not in have:
            self.requests[k] = replace(self.requests[k], loglik_from=(*have, starts))
        return self.requests[k].loglik_from.index(starts)


class BlockScorer:
    """Scores blocks of checked variants with an engine: values by variant index."""

    def __init__(
        self, engine: Engine, genome: Genome, settings: BlockSettings, supervised: Sequence[SupervisedModel] = ()
    ) -> None:
        self.engine, self.genome, self.settings, self.supervised = engine, genome, settings, tuple(supervised)
        self.objective = engine.objective
        wanted = needs(settings.scores, self.objective)
        self.want_pooled = POOLED in wanted or settings.embeddings or bool(self.supervised)
        self.want_logp = MASKED_LOGP in wanted
        self.want_loglik = CAUSAL_LL in wanted

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
        for i in range(len(windows.variants)):
            if self.want_pooled or self.want_loglik:
                self._plan_windows(windows, i, plan)
            plan.masked.append(self._plan_masked(windows, i, plan, masked) if self.want_logp else None)
        return plan

    def _plan_windows(self, windows: WindowBatch, i: int, plan: _Plan) -> None:
        """The ref window's request (once per shared window) and the alt window's, for pooled vectors and
        log-likelihoods."""
        slot, span = windows.ref_index[i], self.settings.span if self.want_pooled else None
        if slot not in plan.ref:
            plan.ref[slot] = plan.add(Request(windows.ref_seqs[slot], pool=span))
        starts = strand_starts(windows.ref_seqs[slot], windows.alt_seqs[i]) if self.want_loglik else None
        plan.ref_sum.append(plan.add_start(plan.ref[slot], starts) if starts else 0)
        plan.alt.append(plan.add(Request(windows.alt_seqs[i], pool=span, loglik_from=(starts,) if starts else ())))

    def _plan_masked(self, windows: WindowBatch, i: int, plan: _Plan, masked: dict) -> int | None:
        """The masked pass of the allele's site, shared by every allele of an SNV/MNV site."""
        v, slot, changed = windows.variants[i], windows.ref_index[i], windows.changed[i]
        if len(changed) != len(v.norm_ref):
            return None
        key = (slot if self.settings.share_ref else i, changed.start, changed.stop)
        if key not in masked:
            positions = tuple(changed)
            masked[key] = plan.add(Request(windows.ref_seqs[slot], logp_at=positions, mask=positions))
        return masked[key]

    def _values(self, windows: WindowBatch, i: int, plan: _Plan, results: list[Result]) -> dict[str, Any]:
        v = windows.variants[i]
        ref_vec = results[plan.ref[windows.ref_index[i]]].pooled if self.want_pooled else None
        alt_vec = results[plan.alt[i]].pooled if self.want_pooled else None
        masked = plan.masked[i]
        ref_ll = results[plan.ref[windows.ref_index[i]]].loglik[plan.ref_sum[i]] if self.want_loglik else None
        alt_ll = results[plan.alt[i]].loglik[0] if self.want_loglik else None
        logp = None if masked is None else results[masked].logp
        inputs = ScoreInputs(v.kind, v.norm_ref, v.norm_alt, ref_vec, alt_vec, logp, ref_ll, alt_ll)
        row: dict[str, Any] = {}
        for name in self.settings.scores:
            value = get(name).on(self.objective).compute(inputs)
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
