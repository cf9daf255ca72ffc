"""vepcli.infer.Engine and vepcli.scores, checked against forward passes written out here.

Windows are real DNA from the chr22 slice (one of them runs into an N block). The expected numbers
come from `CaduceusForMaskedLM.forward` on token ids built here, with the strand averaging done by
hand: PS averages its forward half with its flipped RC half; Ph averages with a second pass on the
reverse complement, flipped back in length (and, for log-probabilities, complemented bases).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vepcli.errors import UserError
from vepcli.infer import Engine, Request
from vepcli.nn.checkpoint import load_model
from vepcli.scores import pool_span
from vepcli.scoring.plugins.embedding import emb_cos, emb_l2
from vepcli.scoring.plugins.llr import llr

torch.set_num_threads(1)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "caduceus-hf"  # vendored, see its README.md
MODELS = {"ps": FIXTURES / "caduceus-ps-tiny", "ph": FIXTURES / "caduceus-ph-tiny"}
L = 256
TOKEN = {"A": 7, "C": 8, "G": 9, "T": 10, "N": 11}
COMP = {7: 10, 10: 7, 8: 9, 9: 8}
PERM = [COMP.get(i, i) for i in range(16)]  # id -> id of its complement
MASK_ID = 3


def ids_of(s: str) -> torch.Tensor:
    return torch.tensor([TOKEN[c] for c in s.upper()], dtype=torch.long)


def rc_str(s: str) -> str:
    return s.upper().translate(str.maketrans("ACGTN", "TGCAN"))[::-1]


def rc_ids(ids: torch.Tensor) -> torch.Tensor:
    return torch.tensor([COMP.get(int(t), int(t)) for t in ids.flip(0)], dtype=torch.long)


@pytest.fixture(scope="module")
def models():
    return {name: load_model(path).eval() for name, path in MODELS.items()}


@pytest.fixture(scope="module")
def seqs(chr22_slice):
    s = chr22_slice.seq
    out = [s[500 : 500 + L], s[1300 : 1300 + L], s[2650 : 2650 + L], s[4000 : 4000 + L]]
    assert "N" in out[2] and "N" not in out[0] + out[1] and any(c.islower() for c in out[1])
    return out


def manual(model, seq: str, mask=(), strand_average=True):
    """(per-base strand-averaged hidden (L, d), per-base log-probs (L, vocab)) from our own passes."""
    ids = ids_of(seq)
    ids[list(mask)] = MASK_ID
    with torch.no_grad():
        logits, hidden = model(torch.stack([ids, rc_ids(ids)]), return_hidden=True)
    logits, hidden = logits.float(), hidden.float()
    lp, lp_rc = torch.log_softmax(logits[0], -1), torch.log_softmax(logits[1], -1).flip(0)[:, PERM]
    d = model.config.d_model
    if model.config.rcps:
        h = 0.5 * (hidden[0, :, :d] + hidden[0, :, d:].flip(-1)) if strand_average else hidden[0, :, :d]
        return h, lp
    if not strand_average:
        return hidden[0], lp
    return 0.5 * (hidden[0] + hidden[1].flip(0)), 0.5 * (lp + lp_rc)


def mixed_requests(seqs):
    c = L // 2
    return [
        Request(seqs[0], pool=(0, L)),
        Request(seqs[1], logp_at=(c,), mask=(c,)),
        Request(seqs[2], pool=(100, 157), logp_at=(c, c + 1), mask=(c, c + 1)),
        Request(seqs[3], pool=(10, 20), logp_at=(5, L - 1)),  # log-probs at unmasked positions
        Request(seqs[0], pool=(0, L), mask=(c,)),  # a mask changes the embedding too
        Request(seqs[3], pool=(0, 1)),
    ]


def check_against_manual(model, reqs, results, strand_average=True):
    assert len(results) == len(reqs)
    for req, res in zip(reqs, results, strict=True):
        assert (res.pooled is None) == (req.pool is None)
        assert (res.logp is None) == (not req.logp_at)
        h, lp = manual(model, req.seq, req.mask, strand_average)
        if req.pool:
            s, e = req.pool
            assert res.pooled.shape == (model.config.d_model,) and res.pooled.dtype == torch.float32
            torch.testing.assert_close(res.pooled, h[s:e].mean(0), atol=1e-5, rtol=1e-5)
        if req.logp_at:
            assert res.logp.shape == (len(req.logp_at), 16)
            torch.testing.assert_close(res.logp, lp[list(req.logp_at)], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["ps", "ph"])
@pytest.mark.parametrize("strand_average", [True, False])
def test_mixed_requests_in_one_batch_match_manual(models, seqs, name, strand_average):
    model = models[name]
    reqs = mixed_requests(seqs)
    results = Engine(model, "cpu", batch_size=len(reqs), strand_average=strand_average).run(reqs)
    check_against_manual(model, reqs, results, strand_average)
    assert (results[0].pooled - results[4].pooled).abs().max() > 1e-5  # the mask was applied


def test_windows_of_other_lengths_in_one_run(models, seqs):
    model = models["ph"]
    reqs = [
        Request(seqs[1][:200], pool=(50, 150), logp_at=(100,), mask=(100,)),
        *mixed_requests(seqs)[:3],
        Request(seqs[0][:31], pool=(0, 31)),
    ]
    check_against_manual(model, reqs, Engine(model, "cpu", batch_size=8).run(reqs))


@pytest.mark.parametrize("name", ["ps", "ph"])
def test_batch_size_invariance(models, seqs, name):
    reqs = [
        *mixed_requests(seqs),
        Request(seqs[1][:200], pool=(50, 150), logp_at=(100,), mask=(100,)),
        *mixed_requests(seqs)[::-1],
    ]
    base = Engine(models[name], "cpu", batch_size=1).run(reqs)
    for bs in (2, 3, 16):
        got = Engine(models[name], "cpu", batch_size=bs).run(reqs)
        for a, b in zip(base, got, strict=True):
            if a.pooled is not None:
                torch.testing.assert_close(b.pooled, a.pooled, atol=1e-5, rtol=1e-5)
            if a.logp is not None:
                torch.testing.assert_close(b.logp, a.logp, atol=1e-5, rtol=1e-5)


def test_engine_reports_progress_per_batch(models, seqs):
    seen = []
    Engine(models["ph"], "cpu", batch_size=3).run([Request(seqs[0], pool=(0, L))] * 7, seen.append)
    assert seen == [3, 3, 1]


def test_ps_strand_average_equals_two_pass(models, seqs):
    """For the RC-equivariant PS model, averaging its two halves is the same as a Ph-style second pass
    on the reverse complement: so the pooled embedding of seq over [s, e) equals that of rc(seq) over
    the mirrored span [L-e, L-s), and log p(b at p | seq) = log p(comp(b) at L-1-p | rc(seq))."""
    model, d = models["ps"], models["ps"].config.d_model
    engine = Engine(model, "cpu", batch_size=4)
    seq, (s, e), p = seqs[0], (90, 170), (L // 2, L // 2 + 3)
    rc = rc_str(seq)
    fwd, rev = engine.run(
        [
            Request(seq, pool=(s, e), logp_at=p, mask=p),
            Request(rc, pool=(L - e, L - s), logp_at=tuple(L - 1 - q for q in p), mask=tuple(L - 1 - q for q in p)),
        ]
    )
    torch.testing.assert_close(fwd.pooled, rev.pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fwd.logp, rev.logp[:, PERM], atol=1e-5, rtol=1e-5)
    # Ph-style two passes on the forward half only, written out by hand (same masked positions)
    ids = ids_of(seq)
    ids[list(p)] = MASK_ID
    with torch.no_grad():
        hidden = model.caduceus(torch.stack([ids, rc_ids(ids)])).float()
    two_pass = 0.5 * (hidden[0, s:e, :d].mean(0) + hidden[1, L - e : L - s, :d].mean(0))
    torch.testing.assert_close(fwd.pooled, two_pass, atol=1e-5, rtol=1e-5)
    # not vacuous: the forward half alone is a different vector
    (one,) = Engine(model, "cpu", strand_average=False).run([Request(seq, pool=(s, e))])
    assert (one.pooled - fwd.pooled).abs().max() > 1e-4


def test_ph_two_pass_is_strand_symmetric(models, seqs):
    model = models["ph"]
    seq, (s, e), p = seqs[1], (30, 200), (L // 2,)
    rc, q = rc_str(seq), (L - 1 - L // 2,)
    both = Engine(model, "cpu").run(
        [Request(seq, pool=(s, e), logp_at=p, mask=p), Request(rc, pool=(L - e, L - s), logp_at=q, mask=q)]
    )
    torch.testing.assert_close(both[0].pooled, both[1].pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[0].logp, both[1].logp[:, PERM], atol=1e-5, rtol=1e-5)
    one = Engine(model, "cpu", strand_average=False).run([Request(seq, pool=(s, e)), Request(rc, pool=(L - e, L - s))])
    assert (one[0].pooled - one[1].pooled).abs().max() > 1e-4  # a single pass is not symmetric


def test_pool_span_clamps_to_the_window():
    assert pool_span(512, 256, 100) == (206, 307)  # pool + 1 positions centred on the variant
    assert pool_span(512, 256, 101) == (206, 307)
    assert pool_span(256, 128, 1536) == (0, 256)  # wider than the window: the whole window
    assert pool_span(256, 128, 256) == (0, 256)
    assert pool_span(256, 128, 254) == (1, 256)
    assert pool_span(10, 0, 4) == (0, 3)
    assert pool_span(10, 9, 4) == (7, 10)
    assert pool_span(1, 0, 0) == (0, 1)


def test_score_functions_by_hand():
    logp = torch.log_softmax(torch.arange(32, dtype=torch.float32).reshape(2, 16), -1)
    # one position: log p(C) - log p(A) = logit(C) - logit(A) = 8 - 7
    assert llr(logp[:1], "A", "C") == pytest.approx(1.0, abs=1e-6)
    assert llr(logp[:1], "T", "A") == pytest.approx(-3.0, abs=1e-6)
    # MNV: summed over positions; lower case is the same base
    assert llr(logp, "AC", "ga") == pytest.approx((9 - 7) + (7 - 8), abs=1e-6)
    a, b = torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.0])
    assert emb_l2(a, b) == pytest.approx(5.0) and emb_l2(a, a) == 0.0
    assert emb_cos(a, 2 * a) == pytest.approx(0.0, abs=1e-12)
    assert emb_cos(a, -a) == pytest.approx(2.0)
    assert emb_cos(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 5.0])) == pytest.approx(1.0)


def test_engine_rejects_bad_settings(models):
    with pytest.raises(UserError, match="precision"):
        Engine(models["ph"], "cpu", precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="cuda"):
            Engine(models["ph"], "cuda")


@pytest.mark.parametrize("arch", ["ps", "ph"])
def test_engine_and_finetuning_pool_the_strands_bitwise_alike(models, seqs, arch):
    """`vepcli score`'s pooled vectors are the ones a fine-tuned head was trained on, to the last bit."""
    from vepcli.finetune.model import pooled_strand_average

    model = models[arch]
    seq = seqs[0][:64]
    span = pool_span(64, 32, 16)
    engine = Engine(model, device="cpu", batch_size=1)
    (got,) = engine.run([Request(seq, pool=span)])
    with torch.no_grad():
        trained = pooled_strand_average(model, ids_of(seq)[None], span)[0]
    assert torch.equal(got.pooled, trained)
