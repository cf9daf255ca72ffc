"""Mamba-2: the SSD scan and the mixer, against float64 references and fixtures made by public code.

The chunked matrix form must equal the step-by-step recurrence for any length (not only whole
chunks), chunk size, number of groups and batch, forward and backward, and reproduce mamba_ssm's own
`ssd_minimal`; it must be causal, batch-size invariant and linear in memory. The mixer must equal its
equations in float64, give Hugging Face's Mamba2Mixer's output on the same weights, and load mamba_ssm's
Mamba2 state dicts by name. tests/fixtures/mamba2/README.md says how each fixture was made.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from vepcli.nn import ssd as ssd_module
from vepcli.nn.mamba2 import Mamba2, RMSNormGated
from vepcli.nn.ssd import ssd, ssd_backend, ssd_chunked, ssd_reference

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mamba2"
NAMES = ["x", "dt", "A", "B", "C", "D", "z", "initial_states"]


def make_inputs(batch: int, L: int, nheads: int, ngroups: int, seed: int, headdim: int = 4, d_state: int = 6):
    """Random SSD inputs in mamba_ssm's layout, dt positive and A negative as the mixer makes them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, L, nheads, headdim, generator=g)
    dt = F.softplus(torch.randn(batch, L, nheads, generator=g) - 1)
    A = -torch.exp(torch.rand(nheads, generator=g) * 2)
    B, C = (torch.randn(batch, L, ngroups, d_state, generator=g) for _ in range(2))
    D = torch.randn(nheads, generator=g)
    z = torch.randn(batch, L, nheads, headdim, generator=g)
    h0 = torch.randn(batch, nheads, headdim, d_state, generator=g)
    return [x, dt, A, B, C, D, z, h0]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def chunked(inputs, chunk_size: int):
    x, dt, A, B, C, D, z, h0 = inputs
    return ssd_chunked(x, dt, A, B, C, chunk_size, D, z, h0, return_final_state=True)


def reference(inputs):
    x, dt, A, B, C, D, z, h0 = inputs
    return ssd_reference(x, dt, A, B, C, D, z, h0, return_final_state=True)


# (batch, L, nheads, ngroups, chunk_size): lengths that are not whole chunks, chunks longer than L,
# one-step chunks, one group, several, one per head
CASES = [
    (1, 1, 2, 1, 4),
    (2, 37, 4, 2, 8),
    (3, 50, 6, 3, 16),
    (5, 64, 4, 1, 64),
    (4, 129, 4, 4, 32),
    (2, 23, 2, 1, 1),
    (1, 45, 4, 2, 100),
]


@pytest.mark.parametrize("block_steps", [ssd_module.BLOCK_STEPS, 24])
@pytest.mark.parametrize(("batch", "L", "nheads", "ngroups", "chunk_size"), CASES)
def test_chunked_equals_float64_recurrence_forward_and_backward(
    batch, L, nheads, ngroups, chunk_size, block_steps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also with short blocks (several per sequence), so that the state crosses block boundaries."""
    monkeypatch.setattr(ssd_module, "BLOCK_STEPS", block_steps)
    inputs = make_inputs(batch, L, nheads, ngroups, seed=L + chunk_size)
    ours = [t.clone().requires_grad_() for t in inputs]
    refs = [t.double().requires_grad_() for t in inputs]
    (y, h), (y_ref, h_ref) = chunked(ours, chunk_size), reference(refs)
    assert y.dtype == torch.float32 and y.shape == inputs[0].shape and h.shape == inputs[-1].shape
    assert rel_err(y, y_ref) < 1e-5
    assert rel_err(h, h_ref) < 1e-5
    g = torch.Generator().manual_seed(1)
    wy, wh = torch.randn(y.shape, generator=g), torch.randn(h.shape, generator=g)
    grads = torch.autograd.grad((y * wy).sum() + (h * wh).sum(), ours)
    grads_ref = torch.autograd.grad((y_ref * wy.double()).sum() + (h_ref * wh.double()).sum(), refs)
    for name, ga, gb in zip(NAMES, grads, grads_ref, strict=True):
        assert rel_err(ga, gb) < 1e-4, name


def test_chunked_in_float64_is_the_recurrence_to_rounding() -> None:
    """In float64 the chunked form and the recurrence agree to ~1e-13: the same function, not a near one."""
    inputs = [t.double() for t in make_inputs(3, 77, 4, 2, seed=5)]
    (y, h), (y_ref, h_ref) = chunked(inputs, 16), reference(inputs)
    assert y.dtype == torch.float64
    assert rel_err(y, y_ref) < 1e-12 and rel_err(h, h_ref) < 1e-12


def test_without_optional_inputs() -> None:
    """No D, no gate, no initial state: y_t = C_t h_t alone, from h_0 = 0."""
    x, dt, A, B, C, *_ = make_inputs(2, 30, 4, 2, seed=9)
    y = ssd_chunked(x, dt, A, B, C, 8)
    assert rel_err(y, ssd_reference(x, dt, A, B, C)) < 1e-5


def test_D_per_head_and_channel() -> None:
    """D of shape (nheads, headdim), mamba_ssm's D_has_hdim."""
    x, dt, A, B, C, _, z, h0 = make_inputs(2, 19, 4, 1, seed=13)
    D = torch.randn(4, x.shape[-1])
    y = ssd_chunked(x, dt, A, B, C, 8, D, z, h0)
    assert rel_err(y, ssd_reference(x, dt, A, B, C, D, z, h0)) < 1e-5


@pytest.mark.parametrize("case", ["heads", "groups"])
@pytest.mark.parametrize("chunk_size", [7, 16, 64])
def test_matches_mamba_ssm_ssd_minimal(case: str, chunk_size: int) -> None:
    """mamba_ssm's `ssd_minimal_discrete` (Listing 1 of the paper), run on these inputs in float64."""
    f = load_file(FIXTURES / "ssd_minimal.safetensors")
    t = {k.split(".", 1)[1]: v for k, v in f.items() if k.startswith(case + ".")}
    x, dt, A, B, C, h0 = (t[k] for k in ("x", "dt", "A", "B", "C", "initial_states"))
    y, h = ssd_chunked(x, dt, A, B, C, chunk_size, initial_states=h0, return_final_state=True)
    assert rel_err(y, t["y"]) < 1e-5 and rel_err(h, t["final_state"]) < 1e-5
    y0, h_end = ssd_chunked(x, dt, A, B, C, chunk_size, return_final_state=True)
    assert rel_err(y0, t["y_zero_init"]) < 1e-5 and rel_err(h_end, t["final_state_zero_init"]) < 1e-5


@pytest.mark.parametrize("name", ["x", "dt", "B", "C"])
def test_causal(name: str) -> None:
    """Changing an input at step t changes nothing before t, and does change step t onwards."""
    inputs = make_inputs(2, 40, 4, 2, seed=17)
    y = chunked(inputs, 8)[0]
    t = 21  # inside a chunk, not at its start
    changed = [v.clone() for v in inputs]
    changed[NAMES.index(name)][:, t] += 1.0
    y2 = chunked(changed, 8)[0]
    assert torch.equal(y2[:, :t], y[:, :t])
    assert (y2[:, t:] - y[:, t:]).abs().amax(dim=(0, 2, 3)).gt(1e-6).any()
    assert (y2[:, t] - y[:, t]).abs().max() > 1e-6


def test_batch_size_invariant() -> None:
    """Each row of a batch of 5 gives what it gives alone."""
    inputs = make_inputs(5, 53, 4, 2, seed=23)
    y, h = chunked(inputs, 16)
    for i in range(5):
        row = [t if t.dim() == 1 else t[i : i + 1] for t in inputs]
        yi, hi = chunked(row, 16)
        assert rel_err(yi, y[i : i + 1]) < 1e-6 and rel_err(hi, h[i : i + 1]) < 1e-6


def test_dispatch_on_this_machine() -> None:
    """On CPU tensors `ssd` runs the pure-PyTorch chunked form and says so."""
    inputs = make_inputs(2, 30, 4, 2, seed=29)
    x, dt, A, B, C, D, z, h0 = inputs
    assert ssd_backend(x.device) == "torch"
    assert torch.equal(ssd(x, dt, A, B, C, 8, D, z, h0), ssd_chunked(x, dt, A, B, C, 8, D, z, h0))


def test_refuses_heads_that_do_not_split_into_groups() -> None:
    x, dt, A, B, C, *_ = make_inputs(1, 10, 4, 3, seed=31)
    with pytest.raises(ValueError, match="4 heads do not split into 3 groups"):
        ssd_chunked(x, dt, A, B, C, 8)


def test_long_input_equals_recurrence() -> None:
    """16,384 steps through 256 chunks: the state handed along stays exact."""
    x, dt, A, B, C, D, z, h0 = make_inputs(1, 16384, 2, 1, seed=37)
    y = ssd_chunked(x, dt, A, B, C, 64, D, None, h0)
    assert rel_err(y, ssd_reference(x, dt, A, B, C, D, None, h0)) < 1e-5


def test_long_input_runs_in_bounded_memory() -> None:
    """16,384 steps forward and backward hold O(L chunk_size) memory, far below one (L, L) matrix."""
    code = (
        "import resource, torch\n"
        "import torch.nn.functional as F\n"
        "from vepcli.nn.ssd import ssd_chunked\n"
        "torch.set_num_threads(1)\n"
        "b, L, h, p, n = 1, 16384, 4, 16, 16\n"
        "x = torch.randn(b, L, h, p, requires_grad=True)\n"
        "dt = F.softplus(torch.randn(b, L, h) - 1).requires_grad_()\n"
        "A = (-torch.rand(h) - 0.1).requires_grad_()\n"
        "B, C = (torch.randn(b, L, 1, n, requires_grad=True) for _ in range(2))\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "y = ssd_chunked(x, dt, A, B, C, 64)\n"
        "y.square().sum().backward()\n"
        "assert torch.isfinite(y).all() and torch.isfinite(x.grad).all() and torch.isfinite(A.grad).all()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak_mb = int(proc.stdout.strip())
    one_LL_mb = 16384 * 16384 * 4 // 2**20  # a single (L, L) fp32 matrix: 1 GiB
    assert peak_mb < one_LL_mb / 4, peak_mb


# ---- the mixer -------------------------------------------------------------------------------------


def mixer_reference(m: Mamba2, params: dict[str, torch.Tensor], u: torch.Tensor) -> torch.Tensor:
    """The Mamba-2 mixer written out from its equations in float64, on the step-by-step recurrence."""
    batch, L, _ = u.shape
    nh, hd, gn = m.nheads, m.headdim, m.ngroups * m.d_state
    d_mlp = m.d_inner - m.d_ssm
    z0, x0, z, xBC, dt = (u @ params["in_proj.weight"].T).split([d_mlp, d_mlp, m.d_ssm, m.d_ssm + 2 * gn, nh], -1)
    conv = F.conv1d(
        xBC.transpose(1, 2), params["conv1d.weight"], params["conv1d.bias"], padding=m.d_conv - 1, groups=xBC.shape[-1]
    )
    x, B, C = F.silu(conv[..., :L].transpose(1, 2)).split([m.d_ssm, gn, gn], -1)
    dt = F.softplus(dt + params["dt_bias"]).clamp(*m.dt_limit)
    D = params["D"].view(nh, hd) if m.D_has_hdim else params["D"]
    heads = (batch, L, nh, hd)
    gate = None if m.rmsnorm else z.reshape(heads)
    y = ssd_reference(x.reshape(heads), dt, -torch.exp(params["A_log"]), B.unflatten(-1, (m.ngroups, -1)),
                      C.unflatten(-1, (m.ngroups, -1)), D, gate).reshape(batch, L, m.d_ssm)  # fmt: skip
    if m.rmsnorm:
        y = (y * F.silu(z)).unflatten(-1, (m.ngroups, -1))
        y = (y / torch.sqrt(y.square().mean(-1, keepdim=True) + 1e-5)).flatten(-2) * params["norm.weight"]
    if d_mlp:
        y = torch.cat([F.silu(z0) * x0, y], dim=-1)
    return y @ params["out_proj.weight"].T


def perturbed(m: Mamba2, seed: int) -> Mamba2:
    """Every parameter moved off its initial value, so that each one shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return m


MIXERS = {
    "groups": dict(d_state=8, headdim=8, ngroups=2, chunk_size=16),
    "one_group_long_conv": dict(d_state=4, headdim=4, ngroups=1, d_conv=6, chunk_size=8),
    "d_ssm_D_per_channel": dict(d_state=8, headdim=8, ngroups=2, d_ssm=32, D_has_hdim=True, chunk_size=16),
    "gate_in_scan_dt_limit": dict(d_state=8, headdim=8, ngroups=4, rmsnorm=False, dt_limit=(0.01, 0.5)),
}


@pytest.mark.parametrize("name", list(MIXERS))
def test_mixer_equals_float64_reference_forward_and_backward(name: str) -> None:
    torch.manual_seed(41)
    m = perturbed(Mamba2(32, **MIXERS[name]), seed=43)
    u = torch.randn(3, 45, 32, generator=torch.Generator().manual_seed(47), requires_grad=True)
    params = {k: v.detach().double().requires_grad_() for k, v in m.named_parameters()}
    u_ref = u.detach().double().requires_grad_()
    y, y_ref = m(u), mixer_reference(m, params, u_ref)
    assert y.shape == u.shape and rel_err(y, y_ref) < 1e-5
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(53))
    (y * w).sum().backward()
    (y_ref * w.double()).sum().backward()
    assert rel_err(u.grad, u_ref.grad) < 1e-4
    for k, p in m.named_parameters():
        assert rel_err(p.grad, params[k].grad) < 1e-4, k


@pytest.mark.parametrize("case", ["groups", "onegroup"])
def test_mixer_matches_transformers_mamba2(case: str) -> None:
    """Hugging Face's Mamba2Mixer (its pure-PyTorch path): the same weights by name, the same output."""
    path = FIXTURES / "hf_mamba2_mixer.safetensors"
    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()[f"{case}.ssm_cfg"])
    t = load_file(path)
    m = Mamba2(32, **cfg)
    prefix = f"{case}.mixer."
    m.load_state_dict({k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)}, strict=True)
    with torch.no_grad():
        assert rel_err(m(t[f"{case}.hidden"]), t[f"{case}.y"]) < 1e-5


@pytest.mark.parametrize("case", ["plain", "dssm"])
def test_mamba_ssm_state_dict_loads_exactly(case: str) -> None:
    """mamba_ssm's own Mamba2, built with the same keys: every name and shape, nothing missing or extra."""
    path = FIXTURES / "mamba_ssm_mamba2.safetensors"
    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()[case])
    theirs = {k.split(".", 1)[1]: v for k, v in load_file(path).items() if k.startswith(case + ".")}
    m = Mamba2(**cfg)
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in theirs.items()}
    m.load_state_dict(theirs, strict=True)
    assert all(torch.equal(m.state_dict()[k], v) for k, v in theirs.items())


def test_initialisation_as_mamba_ssm() -> None:
    """dt = softplus(dt_bias) in [dt_min, dt_max], A = -exp(A_log) in -[1, 16], D = 1: the ranges
    mamba_ssm's own initialisation (the fixture) also keeps."""
    path = FIXTURES / "mamba_ssm_mamba2.safetensors"
    theirs = load_file(path)
    torch.manual_seed(73)
    ours = Mamba2(32, d_state=8, headdim=4, ngroups=2).state_dict()
    for sd in (ours, {k.split(".", 1)[1]: v for k, v in theirs.items() if k.startswith("plain.")}):
        dt, A = F.softplus(sd["dt_bias"]), torch.exp(sd["A_log"])
        assert dt.min() >= 1e-3 - 1e-7 and dt.max() <= 0.1 + 1e-7
        assert A.min() >= 1 - 1e-6 and A.max() <= 16 + 1e-5
        assert torch.equal(sd["D"], torch.ones_like(sd["D"]))
    assert len(set(ours["A_log"].tolist())) == ours["A_log"].numel()  # drawn, not a fixed ladder


@pytest.mark.parametrize("norm_before_gate", [False, True])
def test_gated_norm_matches_mamba_ssm_rms_norm_ref(norm_before_gate: bool) -> None:
    t = load_file(FIXTURES / "mamba_ssm_mamba2.safetensors")
    norm = RMSNormGated(32, eps=1e-5, norm_before_gate=norm_before_gate, group_size=16)
    with torch.no_grad():
        norm.weight.copy_(t["norm.weight"])
        out = norm(t["norm.y"], t["norm.z"])
    assert rel_err(out, t[f"norm.out_before_gate_{norm_before_gate}"]) < 1e-6


def test_mixer_causal_and_batch_size_invariant() -> None:
    torch.manual_seed(57)
    m = perturbed(Mamba2(32, d_state=8, headdim=8, ngroups=2, chunk_size=16), seed=59)
    u = torch.randn(4, 50, 32, generator=torch.Generator().manual_seed(61))
    with torch.no_grad():
        y = m(u)
        changed = u.clone()
        changed[:, 29] += 1.0
        y2 = m(changed)
        assert torch.equal(y2[:, :29], y[:, :29]) and (y2[:, 29] - y[:, 29]).abs().max() > 1e-4
        for i in range(4):
            assert rel_err(m(u[i : i + 1]), y[i : i + 1]) < 1e-6


def test_mixer_refuses_what_it_cannot_build() -> None:
    with pytest.raises(ValueError, match="heads of 24 channels"):
        Mamba2(32, headdim=24)
    with pytest.raises(ValueError, match="in 3 groups"):
        Mamba2(32, headdim=16, ngroups=3)
    with pytest.raises(TypeError):
        Mamba2(32, d_sate=16)  # a misspelt ssm_cfg key is an error, not a silent default


def test_bf16_runs_with_fp32_state() -> None:
    """bf16 weights and activations: dt, A, the scan and the norm stay in fp32 (A = -exp(A_log) in bf16
    would lose its precision), so the output is that of the same (bf16-valued) weights run in fp32, to
    within the rounding of the activations between the layers."""
    torch.manual_seed(67)
    m = perturbed(Mamba2(64, d_state=16, headdim=16, ngroups=2), seed=67).to(torch.bfloat16)
    u = torch.randn(2, 100, 64, generator=torch.Generator().manual_seed(71)).bfloat16()
    with torch.no_grad():
        y_bf16 = m(u)
        y = copy.deepcopy(m).float()(u.float())
    assert y_bf16.dtype == torch.bfloat16 and rel_err(y_bf16, y) < 2e-2
