"""The hybrid decoder's attention and gated MLP (issue 15) against float64 references, mamba_ssm's own
outputs (tests/fixtures/mamba-mha, see its README.md) and invariants: causality, batch-size invariance,
rotary positions that only count relative distance."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vepcli.errors import UserError
from vepcli.nn import attention
from vepcli.nn.attention import CausalSelfAttention, apply_rotary, rotary_cos_sin
from vepcli.nn.mlp import GatedMLP

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mamba-mha"


def randomised(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter drawn anew (biases and conv included), so that a mixed-up layout shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return module


def rotation_matrices(L: int, head_dim: int, r: int, base: float, interleaved: bool) -> torch.Tensor:
    """R_m for m < L, (L, head_dim, head_dim) in float64: the pair (a, b) turned by m * base^(-2i/r),
    a, b = i, i + r/2 (GPT-NeoX halves) or 2i, 2i + 1 (interleaved); the dims past r untouched."""
    R = torch.eye(head_dim, dtype=torch.float64).repeat(L, 1, 1)
    for i in range(r // 2):
        a, b = (2 * i, 2 * i + 1) if interleaved else (i, i + r // 2)
        angle = torch.arange(L, dtype=torch.float64) * base ** (-2 * i / r)
        R[:, a, a], R[:, a, b], R[:, b, a], R[:, b, b] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
    return R


def naive_attention(m: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The block written out in float64, head by head: softmax(q k^T / sqrt(d) + causal mask) v."""
    x = x.double()
    W = {k: v.double() for k, v in m.named_parameters()}  # parameters, not state_dict(): they keep their grads
    batch, L, _ = x.shape
    h, h_kv, d = m.num_heads, m.num_heads_kv, m.head_dim
    proj = x @ W["in_proj.weight"].T + W.get("in_proj.bias", 0)
    n_qkv = d * (h + 2 * h_kv)
    qkv, mlp = proj[..., :n_qkv], proj[..., n_qkv:]
    if m.d_conv > 0:  # causal depthwise conv: out[t] = sum_j w[j] x[t - (d_conv - 1) + j] + bias
        padded = torch.nn.functional.pad(qkv, (0, 0, m.d_conv - 1, 0))
        w = W["conv1d.weight"][:, 0, :]
        qkv = sum(padded[:, j : j + L] * w[:, j] for j in range(m.d_conv)) + W["conv1d.bias"]
    q = qkv[..., : h * d].reshape(batch, L, h, d)
    k = qkv[..., h * d : (h + h_kv) * d].reshape(batch, L, h_kv, d)
    v = qkv[..., (h + h_kv) * d :].reshape(batch, L, h_kv, d)
    if m.rotary_emb_dim > 0:
        R = rotation_matrices(L, d, m.rotary_emb_dim, m.rotary_emb_base, m.rotary_emb_interleaved)
        q = torch.einsum("lij,blhj->blhi", R, q)
        k = torch.einsum("lij,blhj->blhi", R, k)
    scale = 1 / math.sqrt(d) if m.softmax_scale is None else m.softmax_scale
    future = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)
    heads = []
    for j in range(h):
        kv_head = j // (h // h_kv)
        scores = q[:, :, j] @ k[:, :, kv_head].transpose(1, 2) * scale
        probs = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
        heads.append(probs @ v[:, :, kv_head])
    o = torch.cat(heads, dim=-1)
    if m.mlp_dim > 0:
        u, g = mlp.chunk(2, dim=-1)
        o = torch.cat([o, u * g * torch.sigmoid(g)], dim=-1)
    return o @ W["out_proj.weight"].T + W.get("out_proj.bias", 0)


CONFIGS = {  # (heads, kv heads) for GQA ratios 1, 2, 4; rotary on part or all of the head, both layouts
    "mha": {"embed_dim": 24, "num_heads": 3},
    "gqa2-rope": {"embed_dim": 32, "num_heads": 4, "num_heads_kv": 2, "rotary_emb_dim": 4},
    "gqa4-rope-interleaved": {
        "embed_dim": 32,
        "num_heads": 8,
        "num_heads_kv": 2,
        "head_dim": 6,
        "rotary_emb_dim": 6,
        "rotary_emb_interleaved": True,
        "rotary_emb_base": 100.0,
        "qkv_proj_bias": False,
    },
    "mqa-conv-mlp": {
        "embed_dim": 16,
        "num_heads": 4,
        "num_heads_kv": 1,
        "d_conv": 3,
        "mlp_dim": 10,
        "rotary_emb_dim": 2,
        "softmax_scale": 0.2,
    },
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize(("batch", "L"), [(1, 1), (2, 17), (5, 33)])
def test_attention_equals_float64_softmax_forward_and_gradients(name: str, batch: int, L: int) -> None:
    m = randomised(CausalSelfAttention(**CONFIGS[name]).double(), seed=L)
    x = torch.randn(batch, L, m.embed_dim, dtype=torch.float64, requires_grad=True)
    y, y_ref = m(x), naive_attention(m, x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    dy = torch.randn_like(y)
    params = [x, *m.parameters()]
    grads = torch.autograd.grad(y, params, dy)
    grads_ref = torch.autograd.grad(naive_attention(m, x), params, dy)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_attention_float32_is_close_to_float64(name: str) -> None:
    m = randomised(CausalSelfAttention(**CONFIGS[name]))
    x = torch.randn(3, 41, m.embed_dim)
    with torch.no_grad():
        torch.testing.assert_close(m(x).double(), naive_attention(m, x), rtol=1e-5, atol=1e-5)


def test_the_fallback_without_enable_gqa_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """PyTorch < 2.5, and CUDA kernels that cannot broadcast K/V heads, get K and V repeated per query head;
    the two paths must agree."""
    m = randomised(CausalSelfAttention(**CONFIGS["gqa4-rope-interleaved"]).double())
    x = torch.randn(2, 19, m.embed_dim, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
        monkeypatch.setattr(attention, "SDPA_GQA", not attention.SDPA_GQA)
        torch.testing.assert_close(m(x), y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_changing_token_t_changes_no_output_before_t(name: str) -> None:
    m = randomised(CausalSelfAttention(**CONFIGS[name]))
    x = torch.randn(2, 30, m.embed_dim)
    for t in (0, 11, 29):
        x2 = x.clone()
        x2[:, t] += torch.randn(m.embed_dim)
        with torch.no_grad():
            y, y2 = m(x), m(x2)
        assert torch.equal(y[:, :t], y2[:, :t]), f"outputs before {t} moved"
        assert not torch.allclose(y[:, t], y2[:, t]), "the changed token itself had no effect"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_batch_size_invariance(name: str) -> None:
    m = randomised(CausalSelfAttention(**CONFIGS[name]))
    x = torch.randn(5, 23, m.embed_dim)
    with torch.no_grad():
        together = m(x)
        alone = torch.cat([m(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(together, alone, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_equals_explicit_rotation_and_scores_depend_on_relative_position(interleaved: bool) -> None:
    L, d, r, base = 40, 10, 8, 50.0
    x = torch.randn(2, 3, L, d, dtype=torch.float64)
    cos, sin = rotary_cos_sin(L, r, base, x)
    rotated = apply_rotary(x, cos, sin, interleaved)
    R = rotation_matrices(L, d, r, base, interleaved)
    torch.testing.assert_close(rotated, torch.einsum("lij,bhlj->bhli", R, x), rtol=1e-12, atol=1e-12)

    # One query and one key vector placed at every position: after rotary, q_m . k_n is a function of n - m.
    q = apply_rotary(torch.randn(d, dtype=torch.float64).expand(L, d), cos, sin, interleaved)
    k = apply_rotary(torch.randn(d, dtype=torch.float64).expand(L, d), cos, sin, interleaved)
    scores = q @ k.T
    for shift in (1, 7, 25):
        torch.testing.assert_close(scores[shift:, shift:], scores[:-shift, :-shift], rtol=1e-10, atol=1e-10)
    assert not torch.allclose(scores[0, 1:], scores[0, :-1]), "rotary did not depend on distance at all"


def test_rotary_angles_stay_float32_under_bfloat16() -> None:
    """bf16 angles m * theta would be off by whole radians at long L; the tables must be fp32-accurate."""
    L = 4096
    x = torch.zeros(1, 1, L, 8, dtype=torch.bfloat16)
    cos, _ = rotary_cos_sin(L, 8, 10000.0, x)
    cos64, _ = rotary_cos_sin(L, 8, 10000.0, x.double())
    assert cos.dtype == torch.bfloat16
    torch.testing.assert_close(cos.double(), cos64, rtol=0, atol=1e-2)


def test_gated_mlp_equals_explicit_formula_and_rounds_hidden_size() -> None:
    mlp = randomised(GatedMLP(20, hidden_features=40, out_features=12, bias=True, multiple_of=16).double())
    assert mlp.hidden_features == 48
    x = torch.randn(3, 7, 20, dtype=torch.float64)
    W1, b1, W2, b2 = (mlp.state_dict()[k] for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"))
    y = x @ W1[:48].T + b1[:48]
    gate = x @ W1[48:].T + b1[48:]
    expected = (y * gate * torch.sigmoid(gate)) @ W2.T + b2
    torch.testing.assert_close(mlp(x), expected, rtol=1e-12, atol=1e-12)
    assert GatedMLP(64).hidden_features == 256  # int(8 * 64 / 3) = 170, up to a multiple of 128


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_state_dict_names_and_shapes_are_mamba_ssms() -> None:
    """Written down from state-spaces/mamba e9594ce1c732d97440f0332fdc43170a2294dbfa, modules/mha.py
    (in_proj: head_dim (num_heads + 2 num_heads_kv) + mlp_dim rounded up to 256; conv1d over the qkv part;
    out_proj from num_heads head_dim + mlp_dim / 2; flash-attn's rotary buffers are not persistent) and
    modules/mlp.py (fc1 to 2 hidden, fc2; hidden = d_intermediate rounded up to 128)."""
    cfg = {"num_heads": 8, "num_heads_kv": 2, "head_dim": 16, "d_conv": 4, "mlp_dim": 300, "rotary_emb_dim": 8}
    assert shapes(CausalSelfAttention(96, **cfg)) == {
        "in_proj.weight": (704, 96),
        "in_proj.bias": (704,),
        "conv1d.weight": (192, 1, 4),
        "conv1d.bias": (192,),
        "out_proj.weight": (96, 384),
        "out_proj.bias": (96,),
    }
    no_bias = {"num_heads": 6, "num_heads_kv": 3, "qkv_proj_bias": False, "out_proj_bias": False}
    assert shapes(CausalSelfAttention(48, **no_bias)) == {"in_proj.weight": (96, 48), "out_proj.weight": (48, 48)}
    assert shapes(GatedMLP(96, hidden_features=200, out_features=96)) == {
        "fc1.weight": (512, 96),
        "fc2.weight": (96, 256),
    }


def fixture_cases() -> list[str]:
    return list(json.loads((FIXTURES / "configs.json").read_text()))


@pytest.mark.parametrize("case", fixture_cases())
def test_mamba_ssm_state_dict_loads_exactly_and_reproduces_its_outputs(case: str) -> None:
    cfg = json.loads((FIXTURES / "configs.json").read_text())[case]
    tensors = load_file(FIXTURES / "expected.safetensors")
    state = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{case}.")}
    x, expected = state.pop("input"), state.pop("output")
    module = GatedMLP(**cfg) if case == "gated_mlp" else CausalSelfAttention(**cfg)
    assert shapes(module) == {k: tuple(v.shape) for k, v in state.items()}
    module.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({"causal": False}, "attn_cfg.causal"),
        ({"num_heads_kv": 3}, "attn_cfg.num_heads"),
        ({"rotary_emb_dim": 5}, "attn_cfg.rotary_emb_dim"),
        ({"rotary_emb_dim": 10}, "attn_cfg.rotary_emb_dim"),
    ],
)
def test_an_attention_config_it_cannot_honour_is_one_line_naming_the_key(cfg: dict, key: str) -> None:
    with pytest.raises(UserError, match=key) as refusal:
        CausalSelfAttention(32, 4, **cfg)
    assert "\n" not in str(refusal.value)


MEMORY_PROBE = """
import resource, torch
from vepcli.nn.attention import grouped_causal_attention
L = 8192
q = torch.randn(1, 4, L, 64, requires_grad=True)
k, v = (torch.randn(1, 2, L, 64, requires_grad=True) for _ in range(2))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
grouped_causal_attention(q, k, v).sum().backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


@pytest.mark.slow
def test_attention_memory_does_not_hold_the_score_matrix() -> None:
    """At L 8192 the fp32 scores of 4 heads alone are 1 GiB; SDPA's fused CPU kernel needs a few tens of MiB."""
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, check=True)
    extra_mib = float(out.stdout.strip())
    assert extra_mib < 256, f"attention forward + backward took {extra_mib:.0f} MiB more at L 8192"
