"""The batched inference engine: windows in, strand-averaged pooled embeddings and log-probs out.

Callers describe what they need from each window as a `Request`; the engine batches them, runs the
model on the chosen device and precision, averages the two strands (PS: its two halves; Ph: a
second pass on the reverse complement, flipped back) and returns only the small results, never a
(L, hidden) tensor per window. The LM head runs only at the requested positions.

Causal models: a request may ask for window log-likelihoods, sum over t >= start of
log p(token t | tokens < t), in each strand's 5'->3' reading (the RC pass read as it is, with its own
start), then strand-averaged. Logits at t - 1 predict token t, so position 0, which nothing predicts, is
never in a sum. With `echo`, pooled vectors are read off an echo pass (`[x ; x]`, the second copy's
states; the reverse-complement pass echoed too). A request that also asks for log-likelihoods reads
them off the same pass's first copy: by causality its states are those of a plain pass on x.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from vepcli.errors import UserError
from vepcli.nn.backbone import Backbone
from vepcli.nn.strand import carries_both_strands, check_echo, echo, echo_states, mean_of_strands, pooled_strand_average
from vepcli.nn.tokenizer import COMPLEMENT, MASK, batch_encode, reverse_complement_ids
from vepcli.runtime import PRECISIONS, autocast, default_batch_size, pick_device


@dataclass(frozen=True)
class Request:
    """One window and what to read off it."""

    seq: str
    pool: tuple[int, int] | None = None  # mean-pool the last hidden state over [start, end)
    logp_at: tuple[int, ...] = ()  # positions whose masked-LM log-probabilities are wanted
    mask: tuple[int, ...] = ()  # positions replaced by [MASK] before the forward pass
    # causal LM: (forward start, reverse-complement start) of each log-likelihood sum wanted
    loglik_from: tuple[tuple[int, int], ...] = ()


@dataclass
class Result:
    pooled: torch.Tensor | None  # (hidden_width,) float32, strand-averaged
    logp: torch.Tensor | None  # (len(logp_at), vocab) float32, strand-averaged log-probabilities
    loglik: tuple[float, ...] = ()  # one strand-averaged float64 sum per `loglik_from` start pair


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
        echo: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise UserError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        check_echo(model, echo)
        self.device = pick_device(device)
        self.rcps = carries_both_strands(model.strands, model.arch)
        self.model = model.to(self.device).eval()
        self.hidden_width = model.hidden_width
        self.dtype = PRECISIONS[precision]
        self.batch_size = max(1, batch_size or default_batch_size(self.device))
        self.strand_average = strand_average
        self.echo = echo
        self.objective = model.objective
        self.complement = COMPLEMENT.to(self.device)

    @property
    def scan(self) -> str:
        """The scan kernel this engine's forward passes use (recorded in output headers)."""
        return self.model.scan_backend(self.device, self.dtype)

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

    def _run_batch(self, batch: Sequence[Request]) -> list[Result]:
        lengths = {len(r.seq) for r in batch}
        if len(lengths) != 1:  # windows of one run share a length; keep the engine simple
            return [res for r in batch for res in self._run_batch([r])]
        for req in batch:
            self._check(req)
        if not self.echo:
            return self._pass(batch, echoed=False)
        pooled = iter(self._pass([r for r in batch if r.pool], echoed=True))  # only pooled vectors need echo
        plain = iter(self._pass([r for r in batch if not r.pool], echoed=False))
        return [next(pooled if r.pool else plain) for r in batch]

    def _check(self, req: Request) -> None:
        """Refuse, in one line, what the model's objective cannot give."""
        if (req.logp_at or req.mask) and self.objective != "masked":
            raise UserError(f"masked-LM log-probabilities need a masked LM; {self.model.arch} is a {self.objective} LM")
        if req.loglik_from and self.objective != "causal":
            raise UserError(f"window log-likelihoods need a causal LM; {self.model.arch} is a {self.objective} LM")
        if req.loglik_from and self.rcps:  # a causal LM reads one strand 5'->3'; a PS one would need its own sums
            raise UserError(
                f"window log-likelihoods of {self.model.arch}, which carries both strands, are not implemented"
            )

    @torch.no_grad()
    def _pass(self, batch: Sequence[Request], echoed: bool) -> list[Result]:
        """One forward pass (and its reverse-complement pass, for Ph) of windows of one length."""
        if not batch:
            return []
        L = len(batch[0].seq)
        ids = batch_encode([r.seq for r in batch], L)
        for i, req in enumerate(batch):
            if req.mask:
                ids[i, list(req.mask)] = MASK
        ids = ids.to(self.device)
        two_pass = self.strand_average and not self.rcps
        if two_pass:
            ids = torch.cat([ids, reverse_complement_ids(ids)])
        with self._autocast():
            hidden = self.model.hidden_states(echo(ids) if echoed else ids)
        plain, states = (hidden[..., :L, :], echo_states(hidden, L)) if echoed else (hidden, hidden)
        n = len(batch)
        out = []
        for i, req in enumerate(batch):
            pooled = self._pool(states, i, n, req.pool) if req.pool else None
            logp = self._logp(plain, i, n, L, req.logp_at) if req.logp_at else None
            loglik = self._loglik(plain, ids, i, n, req.loglik_from) if req.loglik_from else ()
            out.append(Result(pooled, logp, loglik))
        return out

    def _pool(self, hidden: torch.Tensor, i: int, n: int, span: tuple[int, int]) -> torch.Tensor:
        rc = hidden[n + i] if self.strand_average and not self.rcps else None
        return pooled_strand_average(hidden[i], rc, span, self.rcps, self.strand_average).cpu()

    def _logp(self, hidden: torch.Tensor, i: int, n: int, L: int, positions: tuple[int, ...]) -> torch.Tensor:
        pos = torch.tensor(positions, device=hidden.device)
        with self._autocast():
            logits = self.model.lm_logits(hidden[i, pos])
        logp = torch.log_softmax(logits, -1)
        if self.strand_average and not self.rcps:
            rc_logits = self.model.lm_logits(hidden[n + i, L - 1 - pos])
            logp_rc = torch.log_softmax(rc_logits, -1)[:, self.complement]  # back to forward-strand bases
            logp = mean_of_strands(logp, logp_rc)
        return logp.cpu()

    def _loglik(self, hidden: torch.Tensor, ids: torch.Tensor, i: int, n: int, starts: Sequence[tuple[int, int]]):
        """The strand-averaged causal log-likelihood of row i from each (forward, reverse-complement) start:
        the LM head runs once per strand, from the earliest start, and each start sums its suffix."""
        fwd = self._token_logp(hidden[i], ids[i], min(s for s, _ in starts))
        if not self.strand_average:
            return tuple(float(fwd[s:].sum()) for s, _ in starts)
        rev = self._token_logp(hidden[n + i], ids[n + i], min(r for _, r in starts))
        return tuple(float(mean_of_strands(fwd[s:].sum(), rev[r:].sum())) for s, r in starts)

    def _token_logp(self, hidden: torch.Tensor, ids: torch.Tensor, start: int) -> torch.Tensor:
        """log p(ids[t] | ids[< t]) in float64 at index t for t >= start, and 0 before it (and at t = 0, which
        nothing predicts): a start's sum is then the sum of the vector's suffix."""
        start = max(start, 1)
        with self._autocast():
            logits = self.model.lm_logits(hidden[start - 1 : -1])  # logits at t - 1 predict token t
        logp = torch.log_softmax(logits.double(), -1).gather(-1, ids[start:, None])[:, 0]
        return torch.cat([logp.new_zeros(start), logp])
