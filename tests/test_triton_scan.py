"""The Triton selective scan against the float64 reference, run on CPU by Triton's interpreter.

TRITON_INTERPRET must be set before Triton is first imported (`triton.jit` picks the interpreter then).
Shapes are small and tiles smaller still, so that every case spans several tiles and channel blocks.
"""

import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

pytest.importorskip("triton", reason="Triton is not installed (pip install triton, or the dev extra)")

from triton.runtime import interpreter

from vepcli.nn.kernels import selective_scan
from vepcli.nn.kernels import triton_scan as ts
from vepcli.nn.kernels.reference import selective_scan_reference

pytestmark = pytest.mark.skipif(not ts.available(), reason="Triton imported before TRITON_INTERPRET=1 was set")

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
_SLOW_SCAN = getattr(interpreter.ScanOps, "generic_scan", None)


def _slice_scan(self, input):
    """The interpreter's scan with a user combine function, one slice along the axis at a time.

    The stock version calls the combine function once per element in Python (minutes for these tests);
    this one combines whole slices in the same sequential order: the same float operations, so the same
    bits (`test_slice_scan_is_the_interpreters_scan` checks it)."""
    data = [x.handle.data for x in input]
    out = [d.copy() for d in data]
    acc = None
    for i in range(data[0].shape[self.axis]):
        cur = tuple(self.to_tensor(d.take(i, axis=self.axis), x.dtype) for d, x in zip(data, input, strict=True))
        acc = cur if acc is None else self.combine_fn.fn(*acc, *cur)
        acc = acc if isinstance(acc, tuple) else (acc,)
        for o, a in zip(out, acc, strict=True):
            o[(slice(None),) * self.axis + (i,)] = a.handle.data
    return [self.to_tensor(o, x.dtype) for o, x in zip(out, input, strict=True)]


@pytest.fixture(autouse=True)
def fast_interpreter_scan(monkeypatch):
    if _SLOW_SCAN is not None:
        monkeypatch.setattr(interpreter.ScanOps, "generic_scan", _slice_scan)


def make_inputs(
    batch, L, d_inner, d_state, *, per_row=False, D=True, z=True, bias=True, softplus=True, dtype=torch.float32, seed=0
):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g)

    rows = (batch,) if per_row else ()
    delta = rand(batch, L, d_inner) * 0.5 - 1.0 if softplus else torch.rand(batch, L, d_inner, generator=g) * 0.3
    inputs = {
        "u": rand(batch, L, d_inner),
        "delta": delta,
        "A": -torch.exp(rand(*rows, d_inner, d_state) * 0.5),
        "B": rand(batch, L, d_state),
        "C": rand(batch, L, d_state),
        "D": rand(*rows, *((1,) if per_row else ()), d_inner) if D else None,
        "z": rand(batch, L, d_inner) if z else None,
        "delta_bias": rand(*rows, *((1,) if per_row else ()), d_inner) * 0.3 if bias else None,
    }
    return {k: None if v is None else v.to(dtype) for k, v in inputs.items()}


def forward_and_grads(fn, inputs, w, softplus=True, **kwargs):
    """y and d<y, w>/d(every input), through `fn`."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items() if v is not None}
    y = fn(*(leaves.get(k) for k in NAMES), delta_softplus=softplus, **kwargs)
    grads = torch.autograd.grad((y.double() * w).sum(), list(leaves.values()))
    return y, dict(zip(leaves, grads, strict=True))


def assert_close(got, want, rtol, what):
    err = (got.double() - want.double()).abs().max().item() / max(want.abs().max().item(), 1e-12)
    assert err < rtol, f"{what}: relative error {err:.2e}"


def reference_per_row(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=True):
    """The reference takes per-row D and bias as groups of one row: (batch, d_inner), not (batch, 1, d_inner)."""
    D, delta_bias = (t.squeeze(1) if t is not None and t.dim() == 3 else t for t in (D, delta_bias))
    return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def check_against_reference(inputs, softplus=True, rtol=1e-4, chunk=8, block_d=4):
    w = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y, grads = forward_and_grads(ts.selective_scan_triton, inputs, w, softplus, chunk=chunk, block_d=block_d)
    ref_inputs = {k: None if v is None else v.double() for k, v in inputs.items()}
    y_ref, grads_ref = forward_and_grads(reference_per_row, ref_inputs, w, softplus)
    assert y.dtype == inputs["u"].dtype and y.shape == y_ref.shape
    assert_close(y, y_ref, rtol, "y")
    for name, grad in grads.items():
        assert grad.shape == inputs[name].shape and grad.dtype == inputs[name].dtype, name
        assert_close(grad, grads_ref[name], rtol, f"d{name}")


SHAPES = [  # batch, L, d_inner, d_state, chunk, block_d: several tiles and channel blocks, ragged ends
    (1, 1, 8, 4, 8, 4),
    (2, 7, 12, 16, 4, 8),
    (3, 33, 8, 4, 8, 4),
    (2, 70, 24, 16, 16, 8),
    (1, 33, 10, 5, 8, 4),  # d_state not a power of two: padded and masked
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference_with_everything(shape):
    batch, L, d_inner, d_state, chunk, block_d = shape
    check_against_reference(make_inputs(batch, L, d_inner, d_state), chunk=chunk, block_d=block_d)


@pytest.mark.parametrize(
    "options",
    [
        {"D": False, "z": False, "bias": False},
        {"z": False},
        {"D": False, "bias": False},
        {"per_row": True},
        {"per_row": True, "z": False, "bias": False},
        {"softplus": False},
        {"softplus": False, "bias": False, "per_row": True},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_matches_reference_with_options(options):
    inputs = make_inputs(2, 33, 12, 4, **options)
    check_against_reference(inputs, softplus=options.get("softplus", True))


def test_softplus_at_its_edges():
    """delta + bias far below 0 (log1p of a tiny number) and above 20 (the identity, as mamba_ssm)."""
    inputs = make_inputs(1, 12, 8, 4)
    inputs["delta"] = torch.linspace(-30.0, 30.0, 12 * 8).reshape(1, 12, 8)
    inputs["A"] = inputs["A"] * 0.01  # keep A-bar away from 0 at delta 30
    check_against_reference(inputs)


def test_bf16_inputs_run_in_fp32():
    inputs = make_inputs(2, 33, 12, 4, dtype=torch.bfloat16)
    check_against_reference(inputs, rtol=2e-2)


def test_default_tiles():
    check_against_reference(make_inputs(1, 70, 16, 16), chunk=ts.CHUNK, block_d=ts.BLOCK_D)


def test_rows_do_not_depend_on_batch_mates():
    inputs = make_inputs(3, 33, 12, 4, per_row=True)
    w = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y, grads = forward_and_grads(ts.selective_scan_triton, inputs, w, chunk=8, block_d=4)
    for i in range(3):
        alone = {k: v[i : i + 1] for k, v in inputs.items()}
        y_i, grads_i = forward_and_grads(ts.selective_scan_triton, alone, w[i : i + 1], chunk=8, block_d=4)
        assert torch.equal(y[i : i + 1], y_i), i
        for name in ("u", "delta", "z", "A", "D", "delta_bias"):  # written per row by the kernel, never summed
            assert torch.equal(grads[name][i : i + 1], grads_i[name]), (i, name)
        with torch.no_grad():  # the inference path (no saved states) gives the same numbers
            assert torch.equal(ts.selective_scan_triton(*(alone[k] for k in NAMES), chunk=8, block_d=4), y_i)


def test_dispatch_reaches_triton(monkeypatch):
    inputs = make_inputs(2, 20, 8, 4)
    monkeypatch.setenv("VEPCLI_SCAN", "triton")
    y = selective_scan(*(inputs[k] for k in NAMES))
    assert torch.equal(y, ts.selective_scan_triton(*(inputs[k] for k in NAMES)))


@pytest.mark.skipif(_SLOW_SCAN is None, reason="this Triton's interpreter has no generic_scan to compare with")
def test_slice_scan_is_the_interpreters_scan(monkeypatch):
    inputs = make_inputs(1, 9, 4, 4)
    w = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y_fast, grads_fast = forward_and_grads(ts.selective_scan_triton, inputs, w, chunk=4, block_d=4)
    monkeypatch.setattr(interpreter.ScanOps, "generic_scan", _SLOW_SCAN)
    y_slow, grads_slow = forward_and_grads(ts.selective_scan_triton, inputs, w, chunk=4, block_d=4)
    assert torch.equal(y_fast, y_slow)
    assert all(torch.equal(grads_fast[k], grads_slow[k]) for k in grads_fast)


def test_dispatch_gives_groups_reverse_and_a_shared_gate(monkeypatch):
    """BiMamba's call (two parameter groups, the second scanned from its end, one z for both) on Triton."""
    inputs = make_inputs(4, 21, 8, 4)
    g = torch.Generator().manual_seed(4)
    A = -torch.rand(2, 8, 4, generator=g) - 0.1
    D, bias = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g) * 0.3
    z = inputs["z"][:2]
    monkeypatch.setenv("VEPCLI_SCAN", "triton")
    args = (inputs["u"], inputs["delta"], A, inputs["B"], inputs["C"], D, z, bias)
    y = selective_scan(*args, reverse=[False, True])
    y_ref = selective_scan_reference(*(t.double() for t in args), reverse=[False, True])
    assert_close(y, y_ref, 1e-4, "y")


@pytest.mark.parametrize("arch", ["ps", "ph"])
def test_published_fixtures_match_through_triton(arch, monkeypatch):
    from safetensors.torch import load_file

    from vepcli.nn.checkpoint import load_model

    path = Path(__file__).resolve().parent / "fixtures" / "caduceus-hf" / f"caduceus-{arch}-tiny"
    expected = load_file(path / "expected.safetensors")
    model = load_model(path)
    monkeypatch.setenv("VEPCLI_SCAN", "triton")
    with torch.no_grad():
        logits, hidden = model(expected["input_ids"], return_hidden=True)
    torch.testing.assert_close(hidden, expected["last_hidden_state"], atol=1e-4, rtol=0)
    torch.testing.assert_close(logits, expected["logits"], atol=1e-4, rtol=0)


def test_self_check_passes_the_kernel_and_catches_a_broken_one(monkeypatch, capsys):
    """On a GPU the dispatch first compares the Triton kernel with the torch scan (here: the interpreter)."""
    from vepcli.nn.kernels import triton_self_check

    check = triton_self_check.__wrapped__  # uncached
    assert check(torch.device("cpu")) is None
    good = ts.selective_scan_triton
    monkeypatch.setattr(ts, "selective_scan_triton", lambda *a, **k: good(*a, **k) * 1.01)
    assert "differs from the reference scan" in check(torch.device("cpu"))

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image is available for execution on the device")

    monkeypatch.setattr(ts, "selective_scan_triton", broken)
    assert "failed on cpu (RuntimeError: no kernel image" in check(torch.device("cpu"))
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln]
    assert len(warnings) == 2 and all("using the pure-PyTorch scan" in w for w in warnings)
