"""Every CPU path of the kernels against float64 references: forward, gradients, batch-mates, memory.

The compiled CPU kernels (`cpu`) and the pure-PyTorch path (`torch`) run here, through the public
dispatch with the backend forced; the Triton kernel has its own file (tests/test_triton_scan.py)
because it runs under Triton's interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vepcli.nn.checkpoint import load_model
from vepcli.nn.kernels import (
    conv1d_silu,
    cpu,
    scan_backend,
    selective_scan,
    selective_scan_reference,
    selective_scan_torch,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "caduceus-hf"

if not cpu.available():  # the kernel builds with the C++ compiler every supported machine has
    pytest.fail("the CPU scan kernel did not build: is a C++ compiler (g++) installed?", pytrace=False)

PATHS = ["cpu", "torch"]
NAMES = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]


@pytest.fixture(autouse=True)
def _no_forced_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VEPCLI_SCAN", raising=False)


def run(path: str, fn, *args, **kwargs):
    """Call a dispatching kernel with backend `path` forced, as VEPCLI_SCAN does."""
    old = os.environ.get("VEPCLI_SCAN")
    os.environ["VEPCLI_SCAN"] = path
    try:
        return fn(*args, **kwargs)
    finally:
        os.environ.pop("VEPCLI_SCAN") if old is None else os.environ.__setitem__("VEPCLI_SCAN", old)


def scan(path: str, *args, **kwargs):
    return run(path, selective_scan, *args, **kwargs)


def make_inputs(batch: int, L: int, D: int, N: int, groups: int, seed: int, dtype=torch.float32):
    """Random scan inputs; A, D and bias per group of rows when `groups` > 0 (BiMamba: 2; per row: batch)."""
    g = torch.Generator().manual_seed(seed)
    u, delta, z = (torch.randn(batch, L, D, generator=g) for _ in range(3))
    B, C = (torch.randn(batch, L, N, generator=g) for _ in range(2))
    lead = (groups,) if groups else ()
    A = -torch.rand(*lead, D, N, generator=g) * 4
    Dp, bias = (torch.randn(*lead, D, generator=g) for _ in range(2))
    return [t.to(dtype) for t in (u, delta, A, B, C, Dp, z, bias)]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("batch", "L", "D", "N", "groups", "reverse"),
    [
        (1, 1, 5, 4, 0, None),
        (2, 37, 12, 8, 0, None),
        (3, 130, 20, 16, 3, None),
        (9, 65, 33, 16, 9, None),
        (4, 129, 16, 3, 0, None),
        (5, 200, 7, 16, 5, None),
        (4, 70, 20, 16, 2, [False, True]),
        (6, 131, 24, 8, 3, [True, False, True]),
        (2, 1, 3, 4, 2, [False, True]),
    ],
)
def test_forward_and_gradients_match_float64_reference(path, batch, L, D, N, groups, reverse) -> None:
    inputs = make_inputs(batch, L, D, N, groups, seed=batch * 1000 + L)
    ours = [t.clone().requires_grad_() for t in inputs]
    refs = [t.double().requires_grad_() for t in inputs]
    y = scan(path, *ours, reverse=reverse)
    y_ref = selective_scan_reference(*refs, reverse=reverse)
    assert y.dtype == torch.float32 and y.shape == y_ref.shape
    assert rel_err(y, y_ref) < 1e-5
    weight = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grads = torch.autograd.grad((y * weight.float()).sum(), ours)
    grads_ref = torch.autograd.grad((y_ref * weight).sum(), refs)
    for name, ga, gb in zip(NAMES, grads, grads_ref, strict=True):
        assert ga.shape == gb.shape, name
        if gb.abs().max() > 0:  # dA is exactly 0 for L = 1 (h_0 = 0)
            assert rel_err(ga, gb) < 1e-4, name


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("with_extras", [True, False])
def test_optional_inputs_and_no_softplus(path, with_extras) -> None:
    u, delta, A, B, C, Dp, z, bias = make_inputs(2, 45, 10, 4, 0, seed=11)
    for softplus in (True, False):
        d = delta if softplus else delta.abs() * 0.3  # without softplus, delta + bias must stay positive
        extras = (Dp, z, bias if softplus else bias.abs() * 0.1) if with_extras else (None, None, None)
        ours = [t.clone().requires_grad_() for t in (u, d, A, B, C)]
        y = scan(path, *ours, *extras, delta_softplus=softplus)
        y_ref = selective_scan_reference(
            *[t.double().requires_grad_() for t in (u, d, A, B, C)], *extras, delta_softplus=softplus
        )
        assert rel_err(y, y_ref) < 1e-5
        y.sum().backward()
        assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in ours)


@pytest.mark.parametrize("path", PATHS)
def test_bf16_inputs_keep_fp32_state(path) -> None:
    inputs = make_inputs(2, 300, 16, 16, 2, seed=5)
    y = scan(path, *[t.bfloat16() for t in inputs])
    y_ref = selective_scan_reference(*[t.bfloat16() for t in inputs])  # the same rounded inputs, in fp64
    assert y.dtype == torch.bfloat16
    assert rel_err(y.float(), y_ref) < 1e-2  # the output's own rounding; an all-bf16 state drifts far more


@pytest.mark.parametrize("path", PATHS)
def test_rows_are_bitwise_independent_of_batch_mates(path) -> None:
    inputs = make_inputs(9, 150, 24, 16, 9, seed=3)
    with torch.no_grad():
        full = scan(path, *inputs)
        for n in (1, 2, 5):
            part = [t[:n] if t.shape[0] == 9 else t for t in inputs]
            assert torch.equal(scan(path, *part), full[:n])


def test_cpu_kernel_is_independent_of_thread_count() -> None:
    inputs = make_inputs(6, 97, 40, 16, 6, seed=9)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cpu.selective_scan_cpu(*inputs)
        torch.set_num_threads(2)
        two = cpu.selective_scan_cpu(*inputs)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_dispatch_picks_the_cpu_kernel_and_obeys_vepcli_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VEPCLI_SCAN", raising=False)
    assert scan_backend("cpu") == "cpu"
    assert scan_backend("cpu", torch.float64) == "torch"  # the kernel is fp32; fp64 runs the torch path
    monkeypatch.setenv("VEPCLI_SCAN", "torch")
    assert scan_backend("cpu") == "torch"
    monkeypatch.setenv("VEPCLI_SCAN", "nonsense")
    with pytest.raises(ValueError, match="VEPCLI_SCAN"):
        scan_backend("cpu")
    monkeypatch.setenv("VEPCLI_SCAN", "mamba_ssm")  # a backend that cannot run here says why
    with pytest.raises(ValueError, match="needs mamba_ssm and CUDA"):
        scan_backend("cpu")


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("arch", ["ps", "ph"])
def test_published_fixtures_match_through_every_cpu_path(backend, arch, monkeypatch) -> None:
    monkeypatch.setenv("VEPCLI_SCAN", backend)
    path = FIXTURES / f"caduceus-{arch}-tiny"
    expected = load_file(path / "expected.safetensors")
    model = load_model(path)
    with torch.no_grad():
        logits, hidden = model(expected["input_ids"], return_hidden=True)
    torch.testing.assert_close(hidden, expected["last_hidden_state"], atol=1e-4, rtol=0)
    torch.testing.assert_close(logits, expected["logits"], atol=1e-4, rtol=0)


def test_without_a_compiler_the_torch_path_runs_with_one_warning(tmp_path: Path) -> None:
    code = (
        "import torch\n"
        "from vepcli.nn.kernels import scan_backend, selective_scan\n"
        "x = torch.randn(1, 8, 4)\n"
        "y = selective_scan(x, x, -torch.ones(4, 2), torch.randn(1, 8, 2), torch.randn(1, 8, 2))\n"
        "print(scan_backend('cpu'), y.shape[1])\n"
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-such-cxx"), "VEPCLI_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("VEPCLI_SCAN", None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.split() == ["torch", "8"]
    warnings = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(warnings) == 1 and "CPU scan kernel unavailable" in warnings[0], proc.stderr


def test_long_input_runs_in_bounded_memory_on_the_cpu_kernel() -> None:
    """131,072 steps forward and backward: memory stays linear in L, far below (L, D, N)."""
    code = (
        "import resource, torch\n"
        "from vepcli.nn.kernels import cpu\n"
        "torch.set_num_threads(1)\n"
        "b, L, D, N = 1, 131072, 16, 64\n"
        "u, dl, z = (torch.randn(b, L, D, requires_grad=True) for _ in range(3))\n"
        "B, C = (torch.randn(b, L, N, requires_grad=True) for _ in range(2))\n"
        "A = (-torch.rand(D, N)).requires_grad_()\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "y = cpu.selective_scan_cpu(u, dl, A, B, C, None, z, None)\n"
        "y.sum().backward()\n"
        "assert torch.isfinite(y).all() and torch.isfinite(u.grad).all()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    peak_mb = int(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    )
    states_mb = 131072 * 16 * 64 * 4 // 2**20  # (L, D, N) in fp32: 512 MiB
    assert peak_mb < states_mb / 2, peak_mb


def test_public_entry_matches_reference_with_gradients() -> None:
    """`selective_scan` as the model calls it, whichever backend the dispatch picks here."""
    inputs = make_inputs(3, 70, 12, 8, 3, seed=21)
    ours = [t.clone().requires_grad_() for t in inputs]
    refs = [t.double().requires_grad_() for t in inputs]
    y, y_ref = selective_scan(*ours), selective_scan_reference(*refs)
    assert rel_err(y, y_ref) < 1e-5
    for ga, gb in zip(torch.autograd.grad(y.sum(), ours), torch.autograd.grad(y_ref.sum(), refs), strict=True):
        assert rel_err(ga, gb) < 1e-4


@pytest.mark.parametrize("path", PATHS)
def test_shared_gate_and_strided_views_are_read_in_place(path) -> None:
    """BiMamba's call: z shared by both directions, B and C slices of one projection, two groups."""
    batch, L, D, N = 3, 50, 12, 8
    u, delta, A, _, _, Dp, _, bias = make_inputs(2 * batch, L, D, N, 2, seed=31)
    g = torch.Generator().manual_seed(32)
    proj = torch.randn(2 * batch, L, 5 + 2 * N, generator=g)
    z = torch.randn(batch, L, 2 * D, generator=g)[..., D:]  # a view, as in_proj's second half
    ins = [u, delta, A, proj, Dp, z, bias]
    ours = [t.clone().requires_grad_() for t in ins]
    refs = [t.double().requires_grad_() for t in ins]

    def call(fn, u, delta, A, proj, Dp, z, bias, **kw):
        return fn(u, delta, A, proj[..., 5 : 5 + N], proj[..., 5 + N :], Dp, z, bias, reverse=[False, True], **kw)

    y = call(lambda *a, **k: scan(path, *a, **k), *ours)
    y_ref = call(selective_scan_reference, *refs)
    assert rel_err(y, y_ref) < 1e-5
    for name, ga, gb in zip(
        ["u", "delta", "A", "proj", "D", "z", "bias"],
        torch.autograd.grad(y.square().sum(), ours),
        torch.autograd.grad(y_ref.square().sum(), refs),
        strict=True,
    ):
        assert ga.shape == gb.shape and rel_err(ga, gb) < 1e-4, name


def conv_reference(x, weight, bias, reverse):
    """Depthwise conv by its definition, in float64: out[t] = SiLU(b + sum_k w_k x[t -/+ (K - 1 - k)])."""
    x, weight = x.double(), weight.double()
    L, K = x.shape[1], weight.shape[-1]
    outs = []
    for g in range(weight.shape[0]):
        out = torch.zeros_like(x) + (0 if bias is None else bias[g].double())
        for k in range(K):
            shift = K - 1 - k
            for t in range(L):
                src = t + shift if reverse and reverse[g] else t - shift
                if 0 <= src < L:
                    out[:, t] = out[:, t] + weight[g, :, k] * x[:, src]
        outs.append(torch.nn.functional.silu(out))
    return torch.cat(outs)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("batch", "L", "D", "K", "reverse"),
    [(2, 9, 20, 4, None), (3, 2, 7, 4, [False, True]), (1, 17, 33, 3, [True]), (2, 12, 16, 4, [False, True])],
)
def test_conv1d_silu_matches_its_definition_with_gradients(path, batch, L, D, K, reverse) -> None:
    G = len(reverse) if reverse else 1
    g = torch.Generator().manual_seed(batch * 100 + L)
    wide = torch.randn(batch, L, 2 * D, generator=g)
    ins = [wide, torch.randn(G, D, K, generator=g), torch.randn(G, D, generator=g)]
    ours = [t.clone().requires_grad_() for t in ins]
    refs = [t.double().requires_grad_() for t in ins]
    out = run(path, conv1d_silu, ours[0][..., :D], ours[1], ours[2], reverse)  # x: a view, as in_proj's first half
    ref = conv_reference(refs[0][..., :D], refs[1], refs[2], reverse)
    assert out.shape == (G * batch, L, D) and rel_err(out, ref) < 1e-5
    w = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    for name, ga, gb in zip(
        ["x", "weight", "bias"],
        torch.autograd.grad((out * w.float()).sum(), ours),
        torch.autograd.grad((ref * w).sum(), refs),
        strict=True,
    ):
        assert rel_err(ga, gb) < 1e-5, name


def test_one_call_per_group_as_mamba_ssm_is_driven() -> None:
    """mamba_ssm takes one A per call: the dispatch splits the groups, flips reversed ones, shares z.
    Driven here with the torch scan in mamba_ssm's place (mamba_ssm itself needs CUDA)."""
    from vepcli.nn.kernels import _by_group

    calls = []

    def one_group(u, delta, A, B, C, D, z, bias, softplus):
        assert A.dim() == 2 and (D is None or D.dim() == 1)  # what mamba_ssm accepts
        calls.append(u.shape[0])
        return selective_scan_torch(u, delta, A, B, C, D, z, bias, softplus)

    u, delta, A, B, C, Dp, z, bias = make_inputs(6, 40, 12, 8, 2, seed=41)
    y = _by_group(one_group, u, delta, A, B, C, Dp, z[:3], bias, True, [False, True])
    y_ref = selective_scan_reference(u, delta, A, B, C, Dp, z[:3], bias, reverse=[False, True])
    assert calls == [3, 3] and rel_err(y, y_ref) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["x86-64-v3", "x86-64"])  # AVX2 (8 lanes) and SSE2 (4 lanes)
def test_narrower_vector_builds_match_the_reference(arch: str, tmp_path: Path) -> None:
    """Machines without AVX-512 build the kernel with narrower blocks; the same checks must hold there."""
    if os.uname().machine != "x86_64":
        pytest.skip("x86-64 targets only")
    code = (
        "import sys, torch\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_scan_kernels import make_inputs, rel_err\n"
        "from vepcli.nn.kernels import conv1d_silu, cpu, selective_scan_reference\n"
        "assert cpu.available()\n"
        "ins = make_inputs(4, 77, 21, 16, 2, seed=5)\n"
        "ours = [t.clone().requires_grad_() for t in ins]\n"
        "refs = [t.double().requires_grad_() for t in ins]\n"
        "y = cpu.selective_scan_cpu(*ours, reverse=[False, True])\n"
        "y_ref = selective_scan_reference(*refs, reverse=[False, True])\n"
        "assert rel_err(y, y_ref) < 1e-5, rel_err(y, y_ref)\n"
        "for a, b in zip(torch.autograd.grad(y.sum(), ours), torch.autograd.grad(y_ref.sum(), refs)):\n"
        "    assert rel_err(a, b) < 1e-4, rel_err(a, b)\n"
        "x, w = torch.randn(2, 9, 21), torch.randn(2, 21, 4)\n"
        "out = cpu.conv1d_silu_cpu(x, w, None, [False, True])\n"
        "print(cpu._library().vepcli_block(), out.shape[0])\n"
    )
    env = {**os.environ, "VEPCLI_CPU_ARCH": arch, "VEPCLI_CACHE_DIR": str(tmp_path)}
    env.pop("VEPCLI_SCAN", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1]
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [{"x86-64-v3": "8", "x86-64": "4"}[arch], "4"]
