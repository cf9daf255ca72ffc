"""DNA-xLSTM (issue 16) as a backbone: the public code's checkpoints load (published layout, sLSTM CUDA kernel
layout) and give its outputs; PS is exactly RC-equivariant in vepcli's form; the mLSTM's parallel and
chunkwise forms and the sLSTM scan equal float64 step-by-step recurrences, forward and backward; outputs
do not depend on the batch; files round-trip; what cannot be honoured is refused in one line."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vepcli.errors import UserError
from vepcli.modelcheck import load_checked, weights_digest
from vepcli.modelinfo import model_info
from vepcli.nn.checkpoint import load_model, save_model
from vepcli.nn.mlstm import mlstm_chunkwise, mlstm_parallel, mlstm_recurrent
from vepcli.nn.rcps import flip_LC
from vepcli.nn.slstm import slstm_reference, slstm_scan
from vepcli.nn.xlstm import XLSTMLM, XLSTMCausalLM, XLSTMMaskedLM, build
from vepcli.nn.xlstm_config import XLSTMConfig, config_for_arch
from vepcli.nn.xlstm_published import read_lightning_state

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dna-xlstm"
CKPT = Path("checkpoints") / "test" / "loss.ckpt"


def small_config(**over) -> XLSTMConfig:
    kwargs = {
        "d_model": 32,
        "n_layer": 3,
        "s_lstm_at": [1],
        "m_position_embeddings": True,
        "m_bias": True,
        "s_proj_factor": 1.1,
        "s_round_proj_up_to_multiple_of": 8,
        "max_length": 64,
    }
    return XLSTMConfig(**{**kwargs, **over})


def perturbed(model: XLSTMLM, seed: int = 0) -> XLSTMLM:
    """Every parameter moved off its initial value, so that a mixed-up layout shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 12, (batch, length), generator=torch.Generator().manual_seed(seed))


# the public code's outputs --------------------------------------------------------------------------
@pytest.mark.parametrize("case, chunk", [("xlstm-ph", 64), ("xlstm-ph", 16), ("xlstm-ps", 64)])
def test_published_checkpoint_gives_the_public_codes_outputs(case: str, chunk: int) -> None:
    """model_config.json + a Lightning .ckpt whose sLSTM kernel is in the CUDA layout: loaded by folder, the
    model reproduces the logits and last hidden states the public code computed (the mLSTM in its parallel
    form, and in its chunkwise form with three chunks)."""
    folder = FIXTURES / case
    expected = load_file(folder / "expected.safetensors")
    directory, model, digest = load_checked(folder)
    assert isinstance(model, XLSTMMaskedLM) and digest == weights_digest(folder) != "unknown"
    for block in model.xlstm_block_stack.blocks:
        block.xlstm.chunk = chunk
    assert model.strands == ("ps" if case == "xlstm-ps" else "ph")
    with torch.no_grad():
        hidden = model.hidden_states(expected["input_ids"])
        logits = model.lm_logits(hidden)
    assert (hidden - expected["hidden"]).abs().max() < 1e-4
    assert (logits[..., :12] - expected["logits"]).abs().max() < 1e-4
    assert (logits[..., 12:] == -1e9).all()  # vepcli's padded vocabulary: ids no window holds


def test_published_ps_needs_the_head_flip_and_it_breaks_equivariance() -> None:
    """The published PS checkpoint is read with the deviation; without it the public numbers are missed by a
    wide margin, and with it h(rc x) != RC(h(x)) (the issue's 4-5)."""
    folder = FIXTURES / "xlstm-ps"
    expected = load_file(folder / "expected.safetensors")
    model = load_model(folder)
    x = expected["input_ids"]
    rc = model.token_embedding.complement_map[x.flip(-1)]
    with torch.no_grad():
        assert model.config.ps_head_flip
        assert (model.hidden_states(rc) - flip_LC(model.hidden_states(x))).abs().max() > 1.0
        model.config.ps_head_flip = False
        assert (model.hidden_states(x) - expected["hidden"]).abs().max() > 1.0
        assert (model.hidden_states(rc) - flip_LC(model.hidden_states(x))).abs().max() < 1e-5


def vanilla_layout(state: dict[str, torch.Tensor], heads: int) -> dict[str, torch.Tensor]:
    """The sLSTM tensors rewritten in the public PyTorch ("vanilla") backend's layout, from the CUDA one."""
    out = dict(state)
    for key, t in state.items():
        if key.endswith("_recurrent_kernel_"):  # CUDA [h, k, g * dh + j] -> vanilla [h, g * dh + j, k]
            out[key] = t.transpose(1, 2).contiguous()
        elif key.endswith("slstm_cell._bias_"):  # flat (head, gate, dh) -> flat (gate, head, dh)
            out[key] = t.reshape(heads, 4, -1).transpose(0, 1).reshape(-1).contiguous()
    return out


def test_both_slstm_kernel_layouts_load_to_the_same_model(tmp_path: Path) -> None:
    """The kernel's shape tells the layout: a checkpoint in the PyTorch backend's layout gives the same numbers,
    and the bias is not left scrambled (the keys here also carry torch.compile's `_orig_mod.`)."""
    folder = tmp_path / "xlstm-ps"
    shutil.copytree(FIXTURES / "xlstm-ps", folder)
    ckpt = torch.load(folder / CKPT, weights_only=True)
    ckpt["state_dict"] = {  # and keys as a run trained with torch.compile writes them
        k.replace("model.", "model._orig_mod.", 1): v for k, v in vanilla_layout(ckpt["state_dict"], heads=4).items()
    }
    torch.save(ckpt, folder / CKPT)
    expected = load_file(folder / "expected.safetensors")
    with torch.no_grad():
        logits = load_model(folder)(expected["input_ids"])[..., :12]
    assert (logits - expected["logits"]).abs().max() < 1e-4


def test_published_folder_converts_to_vepcli_files(tmp_path: Path) -> None:
    """`vepcli model convert` writes config.json + model.safetensors that load to the same numbers (the PS
    deviation flag travels in config.json); a second convert into the same folder is refused."""
    from click.testing import CliRunner

    from vepcli.cli import cli

    expected = load_file(FIXTURES / "xlstm-ps" / "expected.safetensors")
    out = tmp_path / "converted"
    for code in (0, 1):
        result = CliRunner().invoke(cli, ["model", "convert", str(FIXTURES / "xlstm-ps"), "-o", str(out)])
        assert result.exit_code == code, result.output
    assert "already holds a model" in result.output
    bad = CliRunner().invoke(cli, ["model", "convert", str(tmp_path / "no-model"), "-o", str(tmp_path / "never")])
    assert bad.exit_code == 1 and not (tmp_path / "never").exists()  # nothing half-made
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "dna_xlstm" and config["ps_head_flip"] is True
    with torch.no_grad():
        logits = load_model(out)(expected["input_ids"])[..., :12]
    assert (logits - expected["logits"]).abs().max() < 1e-4


# invariants of vepcli's own form --------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [True, False])
def test_ps_is_exactly_rc_equivariant(bidirectional: bool) -> None:
    """h(rc x) = flip_LC(h(x)) and logits(rc x) = complement(flip_L(logits(x))), masked and causal, with
    mLSTM and sLSTM blocks."""
    model = perturbed(build(small_config(rcps=True, bidirectional=bidirectional)))
    x = ids(2, 21)
    comp = model.token_embedding.complement_map
    rc = comp[x.flip(-1)]
    with torch.no_grad():
        h, h_rc = model.hidden_states(x), model.hidden_states(rc)
        assert h.shape == (2, 21, 64)
        assert (h_rc - flip_LC(h)).abs().max() < 1e-5
        assert (model.lm_logits(h_rc)[..., :12] - model.lm_logits(h).flip(1)[..., comp]).abs().max() < 1e-4


@pytest.mark.parametrize("m0", [0.0, float("-inf")])
def test_mlstm_forms_equal_the_float64_recurrence(m0: float) -> None:
    """Parallel, chunkwise (length not a multiple of the chunk) and the step-by-step recurrence agree, outputs
    and gradients, for both stabiliser conventions; small input gates make the normaliser's lower bound act."""
    g = torch.Generator().manual_seed(0)
    batch, heads, length, d = 2, 3, 13, 4
    q, k, v = (torch.randn(batch, heads, length, d, generator=g, dtype=torch.float64) for _ in range(3))
    i_pre = torch.randn(batch, heads, length, generator=g, dtype=torch.float64) * 2 - 3
    f_pre = torch.randn(batch, heads, length, generator=g, dtype=torch.float64) + 2
    inputs = [t.requires_grad_() for t in (q, k, v, i_pre, f_pre)]
    weight = torch.randn(batch, heads, length, d, generator=g, dtype=torch.float64)
    results = []
    for form in (
        lambda *a: mlstm_recurrent(*a, m0=m0),
        lambda *a: mlstm_parallel(*a, m0=m0),
        lambda *a: mlstm_chunkwise(*a, chunk=4, m0=m0),
    ):
        out = form(*inputs)
        grads = torch.autograd.grad((out * weight).sum(), inputs)
        results.append((out, grads))
    ref_out, ref_grads = results[0]
    for out, grads in results[1:]:
        assert (out - ref_out).abs().max() < 1e-10
        assert all((a - b).abs().max() < 1e-9 for a, b in zip(grads, ref_grads, strict=True))


def test_slstm_scan_equals_the_float64_recurrence() -> None:
    """The fused per-step scan and the gate-by-gate recurrence agree, outputs and gradients."""
    g = torch.Generator().manual_seed(0)
    batch, length, heads, dh = 3, 11, 2, 4
    wx = torch.randn(batch, length, 4, heads, dh, generator=g, dtype=torch.float64).requires_grad_()
    R = (0.5 * torch.randn(heads, dh, 4, dh, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.randn(heads, 4, dh, generator=g, dtype=torch.float64).requires_grad_()
    weight = torch.randn(batch, length, heads, dh, generator=g, dtype=torch.float64)
    outs = [fn(wx, R, b) for fn in (slstm_scan, slstm_reference)]
    grads = [torch.autograd.grad((out * weight).sum(), (wx, R, b)) for out in outs]
    assert (outs[0] - outs[1]).abs().max() < 1e-12
    assert all((a - c).abs().max() < 1e-10 for a, c in zip(*grads, strict=True))


def test_long_inputs_take_the_chunkwise_form_with_the_same_numbers() -> None:
    """A model run past one mLSTM chunk (chunkwise) equals the same model with one chunk as long as the input
    (parallel)."""
    model = perturbed(build(small_config()))
    x = ids(2, 30)
    with torch.no_grad():
        whole = model(x)
        for block in model.xlstm_block_stack.blocks:
            block.xlstm.chunk = 8
        chunked = model(x)
    assert (chunked - whole).abs().max() < 1e-5


@pytest.mark.parametrize("rcps", [False, True])
def test_outputs_do_not_depend_on_the_batch(rcps: bool) -> None:
    """Each row's logits are the same alone as in a batch of three (also with the published PS deviation)."""
    model = perturbed(build(small_config(rcps=rcps, ps_head_flip=rcps)))
    x = ids(3, 19)
    with torch.no_grad():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(3)])
    assert (together - alone).abs().max() < 1e-5


def test_causal_model_reads_left_to_right() -> None:
    """A causal DNA-xLSTM: changing tokens after t leaves the logits up to t unchanged."""
    model = perturbed(build(small_config(bidirectional=False)))
    assert isinstance(model, XLSTMCausalLM) and model.objective == "causal"
    x = ids(1, 20)
    y = x.clone()
    y[:, 12:] = (y[:, 12:] + 1) % 12
    with torch.no_grad():
        a, b = model(x), model(y)
    assert (a[:, :12] - b[:, :12]).abs().max() < 1e-6
    assert (a[:, 12:] - b[:, 12:]).abs().max() > 1e-3


def test_mixed_precision_keeps_the_cells_in_fp32(monkeypatch) -> None:
    """Under bf16 autocast the projections run in bf16 but the mLSTM and sLSTM recurrences run in fp32 (each
    gives bit for bit what it gives on the same inputs with autocast off); the logits stay near the fp32 ones."""
    import vepcli.nn.mlstm as mlstm
    import vepcli.nn.slstm as slstm

    seen = []

    def spy(real):
        def run(*args):
            out = real(*args)
            with torch.autocast("cpu", enabled=False):
                same = torch.equal(out, real(*args))
            seen.append(same and {t.dtype for t in (*args, out) if isinstance(t, torch.Tensor)} == {torch.float32})
            return out

        return run

    monkeypatch.setattr(mlstm, "mlstm_cell", spy(mlstm.mlstm_cell))
    monkeypatch.setattr(slstm, "slstm_scan", spy(slstm.slstm_scan))
    model = perturbed(build(small_config(rcps=True)))
    x = ids(2, 40)
    with torch.no_grad():
        full = model(x)[..., :12]
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(x)[..., :12]
    assert len(seen) == 3 and all(seen)  # 3 blocks, both directions in one call each
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed).all()
    assert (mixed - full).abs().max() < 0.25 * full.abs().max()


@pytest.mark.parametrize("over", [{}, {"rcps": True}, {"bidirectional": False, "s_lstm_at": [0, 2]}])
def test_save_and_load_round_trip(tmp_path: Path, over: dict) -> None:
    """save_model writes config.json + model.safetensors that load to the same model and logits."""
    model = perturbed(build(small_config(**over)))
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded) is type(model) and loaded.config == model.config
    x = ids(2, 17)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    info = model_info(str(tmp_path))
    assert info["family"] == "dna_xlstm" and info["pooled_width"] == 32


@pytest.mark.parametrize(
    "arch, objective, strands",
    [("xlstm-ph", "masked", "ph"), ("xlstm-ps", "masked", "ps"), ("xlstm-causal", "causal", "ph")],
)
def test_configs_for_training_archs(arch: str, objective: str, strands: str) -> None:
    model = build(config_for_arch(arch, d_model=64, n_layer=2, max_length=128, s_lstm_at=[1]))
    assert (model.objective, model.strands, model.arch, model.trained_length) == (objective, strands, arch, 128)
    with pytest.raises(UserError) as err:
        config_for_arch("xlstm", 64, 2, 128)
    assert "xlstm-ph" in one_line(err)


# one-line refusals ----------------------------------------------------------------------------------
def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_checkpoint_needing_pickle_is_refused_with_how_to_convert(tmp_path: Path) -> None:
    """A Lightning checkpoint holding Python objects (hyper-parameters) is never unpickled."""
    path = tmp_path / "loss.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": argparse.Namespace(lr=1e-3)}, path)
    with pytest.raises(UserError) as err:
        read_lightning_state(path)
    assert "re-save its weights alone" in one_line(err)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["config"].update(bidirectional_alternating=True), "bidirectional_alternating"),
        (lambda c: c["config"].update(s_lstm_at=[5]), "s_lstm_at"),
        (lambda c: c["config"].update(d_model=30), "sLSTM heads"),
        (lambda c: c["config"].update(s_num_heads=2), "neither the CUDA"),
        (lambda c: c.update(config={"_target_": "models.other.Config"}), "not a DNA-xLSTM"),
    ],
)
def test_bad_published_folders_are_refused_in_one_line(tmp_path: Path, change, message: str) -> None:
    folder = tmp_path / "xlstm-ps"
    shutil.copytree(FIXTURES / "xlstm-ps", folder)
    config = json.loads((folder / "model_config.json").read_text())
    change(config)
    (folder / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError) as err:
        load_model(folder)
    assert message in one_line(err)


def test_two_checkpoints_in_a_published_folder_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "xlstm-ph"
    shutil.copytree(FIXTURES / "xlstm-ph", folder)
    shutil.copy(folder / CKPT, folder / "checkpoints" / "last.ckpt")
    with pytest.raises(UserError) as err:
        load_model(folder)
    assert "exactly one checkpoint" in one_line(err)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"m_heads": 4}, "m_heads"),
        ({"m_num_heads": 0}, "m_num_heads must be a whole number"),
        ({"d_model": "128"}, "d_model must be a whole number"),
        ({"rcps": "yes"}, "rcps must be true or false"),
        ({"s_lstm_at": "all"}, "s_lstm_at must be a list"),
        ({"complement_map": {"0": 1}}, "complement_map must map each token id"),
        ({"m_proj_factor": 0}, "m_proj_factor must be a number above 0"),
        ({"m_num_heads": 64, "m_position_embeddings": True, "d_model": 96}, "even mLSTM head width"),
        ({"s_lstm_at": [0], "s_proj_factor": 0.1, "s_round_proj_up_dim_up": False}, "FFN width above 0"),
    ],
)
def test_bad_configs_are_refused_in_one_line(fields: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        XLSTMConfig.from_dict({"model_type": "dna_xlstm", **fields})
    assert message in one_line(err)


@pytest.mark.parametrize("rcps", [False, True])
def test_the_engine_reads_dna_xlstm_through_the_interface(tmp_path: Path, rcps: bool) -> None:
    """Pooled vectors and masked log-probabilities come out of the engine for PH and PS models alike; a window
    and its reverse complement (span and position mirrored) give the same strand-averaged readings."""
    from vepcli.infer import Engine, Request
    from vepcli.nn.tokenizer import reverse_complement

    save_model(perturbed(build(small_config(rcps=rcps))), tmp_path)
    engine = Engine(load_model(tmp_path), device="cpu")
    seq = "ACGTTGCAAGGCTTACGATCGGATCCATGCAAT"
    length, pos, span = len(seq), 11, (8, 20)
    fwd, rev = engine.run(
        [
            Request(seq, pool=span, logp_at=(pos,), mask=(pos,)),
            Request(
                reverse_complement(seq),
                pool=(length - span[1], length - span[0]),
                logp_at=(length - 1 - pos,),
                mask=(length - 1 - pos,),
            ),
        ]
    )
    assert fwd.pooled.shape == (32,) and fwd.logp.shape[0] == 1
    torch.testing.assert_close(rev.pooled, fwd.pooled, atol=1e-5, rtol=0)
    comp = torch.tensor([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11])
    torch.testing.assert_close(rev.logp[0, comp], fwd.logp[0, :12], atol=1e-5, rtol=0)
    assert (fwd.logp[0, 12:] < -1e8).all()  # the padded ids: probability 0, still finite


def saved_for_backward(forward) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of `forward()` (its activation memory),
    counted exactly through saved-tensor hooks: deterministic, unlike a process's peak RSS."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return total


def test_memory_for_training_is_linear_in_length() -> None:
    """A masked PS model (mLSTM and sLSTM blocks) keeps 2x the activations for backward at 2x the length; the
    one-block parallel form of the mLSTM cell, the (L, L) decay matrix, keeps ~4x (so the measure can fail)."""
    torch.manual_seed(0)
    model = build(XLSTMConfig(d_model=64, n_layer=2, s_lstm_at=[1], rcps=True, m_position_embeddings=True))
    model_bytes = [
        saved_for_backward(lambda n=n: model(torch.randint(7, 11, (1, n)))[..., :12].sum()) for n in (1024, 2048)
    ]
    assert model_bytes[1] < 2.1 * model_bytes[0], model_bytes

    def cell(n: int) -> int:
        q, k, v = (torch.randn(1, 2, n, 8, requires_grad=True) for _ in range(3))
        gates = [torch.randn(1, 2, n, requires_grad=True) for _ in range(2)]
        return saved_for_backward(lambda: mlstm_parallel(q, k, v, *gates).sum())

    parallel = [cell(n) for n in (1024, 2048)]
    assert parallel[1] > 3.5 * parallel[0], parallel
