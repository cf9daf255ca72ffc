"""The batched inference engine: windows in, strand-averaged pooled embeddings and log-probs out.

Callers describe what they need from each window as a `Request`; the engine batches them, runs the
model on the chosen device and precision, averages the two strands (PS: its two halves; Ph: a
second pass on the reverse complement, flipped back) and returns only the small results, never a
(L, hidden) tensor per window. The LM head runs only at the requested positions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from vepcli.errors import UserError
from vepcli.nn.backbone import Backbone
from vepcli.nn.strand import carries_both_strands, mean_of_strands, pooled_strand_average
from vepcli.nn.tokenizer import COMPLEMENT, MASK, batch_encode, reverse_complement_ids
from vepcli.runtime import PRECISIONS, autocast, default_batch_size, pick_device


@dataclass(frozen=True)
class Request:
    """One window and what to read off it."""

    seq: str
    pool: tuple[int, int] | None = None  # mean-pool the last hidden state over [start, end)
    logp_at: tuple[int, ...] = ()  # positions whose masked-LM log-probabilities are wanted
    mask: tuple[int, ...] = ()  # positions replaced by [MASK] before the forward pass


@dataclass
class Result:
    pooled: torch.Tensor | None  # (hidden_width,) float32, strand-averaged
    logp: torch.Tensor | None  # (len(logp_at), vocab) float32, strand-averaged log-probabilities


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


class Engine:
    """Runs Requests through a backbone (`vepcli.nn.backbone`) in batches."""

    def __init__(
        self,
        model: Backbone,
        device: str = "auto",
        precision: str = "fp32",
        batch_size: int | None = None,
        strand_average: bool = True,
    ) -> None:
        if precision not in PRECISIONS:
            raise UserError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.device = pick_device(device)
        self.rcps = carries_both_strands(model.strands, model.arch)
        self.model = model.to(self.device).eval()
        self.hidden_width = model.hidden_width
        self.dtype = PRECISIONS[precision]
        self.batch_size = max(1, batch_size or default_batch_size(self.device))
        self.strand_average = strand_average
        self.complement = COMPLEMENT.to(self.device)

    @property
    def scan(self) -> str:
        """The selective-scan backend this engine's forward passes use (recorded in output headers)."""
        from vepcli.nn.kernels import scan_backend

        return scan_backend(self.device, self.dtype)

    def _autocast(self):
        return autocast(self.device, self.dtype)

    def run(self, requests: Sequence[Request], progress: Callable[[int], None] | None = None) -> list[Result]:
        """Results in the order of `requests`; the batch is halved on GPU out-of-memory."""
        results: list[Result] = []
        i = 0
        while i < len(requests):
            batch = requests[i : i + self.batch_size]
            try:
                results.extend(self._run_batch(batch))
            except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
                if not _is_oom(err) or self.device.type != "cuda":
                    raise
                torch.cuda.empty_cache()
                if self.batch_size == 1:
                    raise UserError("out of GPU memory with a batch of one window; use a smaller --window") from None
                self.batch_size //= 2
                continue
            i += len(batch)
            if progress:
                progress(len(batch))
        return results

    @torch.no_grad()
    def _run_batch(self, batch: Sequence[Request]) -> list[Result]:
        lengths = {len(r.seq) for r in batch}
        if len(lengths) != 1:  # windows of one run share a length; keep the engine simple
            return [res for r in batch for res in self._run_batch([r])]
        L = lengths.pop()
        ids = batch_encode([r.seq for r in batch], L)
        for i, req in enumerate(batch):
            if req.mask:
                ids[i, list(req.mask)] = MASK
        ids = ids.to(self.device)
        two_pass = self.strand_average and not self.rcps
        if two_pass:
            ids = torch.cat([ids, reverse_complement_ids(ids)])
        with self._autocast():
            hidden = self.model.hidden_states(ids)
        n = len(batch)
        out = []
        for i, req in enumerate(batch):
            pooled = self._pool(hidden, i, n, req.pool) if req.pool else None
            logp = self._logp(hidden, i, n, L, req.logp_at) if req.logp_at else None
            out.append(Result(pooled, logp))
        return out

    def _pool(self, hidden: torch.Tensor, i: int, n: int, span: tuple[int, int]) -> torch.Tensor:
        rc = hidden[n + i] if self.strand_average and not self.rcps else None
        return pooled_strand_average(hidden[i], rc, span, self.rcps, self.strand_average).cpu()

    def _logp(self, hidden: torch.Tensor, i: int, n: int, L: int, positions: tuple[int, ...]) -> torch.Tensor:
        if self.model.objective != "masked":
            raise UserError(f"masked-LM log-probabilities need a masked LM; {self.model.arch} is not one")
        pos = torch.tensor(positions, device=hidden.device)
        with self._autocast():
            logits = self.model.lm_logits(hidden[i, pos])
        logp = torch.log_softmax(logits, -1)
        if self.strand_average and not self.rcps:
            rc_logits = self.model.lm_logits(hidden[n + i, L - 1 - pos])
            logp_rc = torch.log_softmax(rc_logits, -1)[:, self.complement]  # back to forward-strand bases
            logp = mean_of_strands(logp, logp_rc)
        return logp.cpu()
