"""The hybrid Mamba-2/attention decoder (issue 15) as a backbone: mamba_ssm's checkpoints load and give its
logits, the model is causal and batch-size invariant, its files round-trip, and what it cannot honour is
refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vepcli.errors import UserError
from vepcli.modelcheck import load_checked
from vepcli.modelinfo import model_info
from vepcli.nn.backbone import family_of
from vepcli.nn.checkpoint import load_model, save_model
from vepcli.nn.hybrid import MODEL_TYPE, HybridLM, MambaLMConfig

HYBRID_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mamba-hybrid"
CASES = ("hybrid-a", "hybrid-b")


def small_config(**over) -> MambaLMConfig:
    kwargs = {
        "d_model": 32,
        "n_layer": 4,
        "d_intermediate": 48,
        "vocab_size": 12,
        "ssm_cfg": {"layer": "Mamba2", "d_state": 8, "headdim": 8, "ngroups": 2, "chunk_size": 16},
        "attn_layer_idx": [1, 3],
        "attn_cfg": {"num_heads": 4, "num_heads_kv": 2, "rotary_emb_dim": 8},
        "max_length": 64,
    }
    return MambaLMConfig(**{**kwargs, **over})


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter moved off its initial value, so that a mixed-up layout shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("case", CASES)
def test_mamba_ssm_checkpoint_loads_and_gives_its_logits(case: str) -> None:
    """A MambaLMHeadModel folder as mamba_ssm's save_pretrained wrote it (config.json without model_type,
    pytorch_model.bin) loads by name and shape, and reproduces the logits mamba_ssm computed."""
    folder = HYBRID_FIXTURES / case
    expected = load_file(folder / "expected.safetensors")
    published = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    model = load_model(folder)
    assert isinstance(model, HybridLM)
    own = model.state_dict()
    assert set(published) == set(own)  # every key mamba_ssm writes, and nothing else
    assert all(published[k].shape == own[k].shape for k in own)
    with torch.no_grad():
        logits = model(expected["input_ids"])
        hidden = model.hidden_states(expected["input_ids"])
    torch.testing.assert_close(logits, expected["logits"].float(), atol=1e-4, rtol=1e-4)
    if "hidden" in expected:
        torch.testing.assert_close(hidden, expected["hidden"].float(), atol=1e-4, rtol=1e-4)


def test_changing_later_tokens_never_changes_earlier_outputs() -> None:
    torch.manual_seed(0)
    model = perturbed(HybridLM(small_config()))
    x = torch.randint(0, 12, (3, 50))
    y = x.clone()
    y[:, 31:] = torch.randint(0, 12, (3, 19))
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[:, :31], b[:, :31])  # bitwise: nothing after t enters position t
    assert not torch.allclose(a[:, 31:], b[:, 31:])


def test_outputs_do_not_depend_on_batch_mates_or_batch_size() -> None:
    torch.manual_seed(1)
    model = perturbed(HybridLM(small_config()))
    x = torch.randint(0, 12, (5, 40))
    with torch.no_grad():
        whole = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(whole, alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize("tie", [True, False])
def test_save_and_load_round_trip(tmp_path: Path, tie: bool) -> None:
    torch.manual_seed(2)
    model = perturbed(HybridLM(small_config(tie_embeddings=tie)))
    save_model(model, tmp_path)
    stored = load_file(tmp_path / "model.safetensors")
    assert ("lm_head.weight" in stored) is not tie  # a tied head is stored once, an untied one kept
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == MODEL_TYPE and config["max_length"] == 64
    loaded = load_model(tmp_path)
    assert (loaded.lm_head.weight is loaded.backbone.embedding.weight) is tie
    x = torch.randint(0, 12, (2, 30))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_untied_checkpoint_without_its_head_is_refused(tmp_path: Path) -> None:
    """An untied model whose file lacks lm_head.weight would silently run a random head: refused."""
    model = HybridLM(small_config(tie_embeddings=False))
    save_model(model, tmp_path)
    from safetensors.torch import save_file

    state = load_file(tmp_path / "model.safetensors")
    del state["lm_head.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(UserError, match="missing.*lm_head"):
        load_model(tmp_path)


def test_a_mamba_ssm_config_without_model_type_is_this_family() -> None:
    mamba_ssm_json = {k: v for k, v in small_config().to_dict().items() if k not in ("model_type", "max_length")}
    assert family_of(mamba_ssm_json).model_type == MODEL_TYPE
    caduceus_json = {"d_model": 8, "n_layer": 1, "rcps": True, "ssm_cfg": {}}
    assert family_of(caduceus_json).model_type == "caduceus"  # early uploads named no model_type either


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ssm_cfg": {"layer": "Mamba1"}}, "Mamba-2 mixers only"),
        ({"ssm_cfg": {"layer": "Mamba2", "d_stat": 8}}, "ssm_cfg has keys Mamba2 does not take: \\['d_stat'\\]"),
        ({"attn_cfg": {"num_heads": 4, "window": 3}}, "attn_cfg has keys"),
        ({"attn_layer_idx": [7]}, "not layer indices of a 4-layer model"),
        ({"attn_cfg": {"num_heads": 3, "num_heads_kv": 2}}, "not a multiple"),
        ({"d_intermediate": -1}, "d_intermediate"),
    ],
)
def test_configs_it_cannot_honour_are_one_line_refusals(tmp_path: Path, change: dict, message: str) -> None:
    config = {**small_config().to_dict(), **change}
    save_model(HybridLM(small_config()), tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=message) as err:
        load_checked(tmp_path)
    assert "\n" not in str(err.value)


def test_model_info_describes_the_hybrid(tmp_path: Path) -> None:
    save_model(HybridLM(small_config()), tmp_path)
    facts = model_info(str(tmp_path))
    assert facts["family"] == MODEL_TYPE and facts["objective"] == "causal LM"
    assert facts["attention layers"] == "1, 3" and facts["max_length"] == 64
    assert facts["pooled_width"] == 32 and facts["scan_kernel"].startswith("ssd-torch on CPU")
    assert facts["parameters"] == HybridLM(small_config()).num_parameters()


def test_api_embed_with_echo_averages_the_echo_states_of_both_strands() -> None:
    import vepcli.api as vep
    from vepcli.nn.tokenizer import batch_encode, reverse_complement

    torch.manual_seed(3)
    model = perturbed(HybridLM(small_config()))
    seq = "ACGTTGCAAGGCTTAACGTA"
    fwd, rev = batch_encode([seq]), batch_encode([reverse_complement(seq)])
    with torch.no_grad():
        h_fwd = model.hidden_states(torch.cat([fwd, fwd], -1))[:, 20:]
        h_rev = model.hidden_states(torch.cat([rev, rev], -1))[:, 20:]
    expected = 0.5 * (h_fwd + h_rev.flip(1))
    assert torch.equal(vep.embed(model, [seq], echo=True), expected)
    assert not torch.allclose(vep.embed(model, [seq]), expected)
    with pytest.raises(UserError, match="--echo is for causal LMs"):
        vep.embed(load_model(Path(__file__).parent / "fixtures" / "caduceus-hf" / "caduceus-ph-tiny"), [seq], echo=True)
