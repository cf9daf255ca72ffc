"""The backbone interface: a second family drops in through the public registry alone, Caduceus declares
itself through the interface, and a config no family reads is one refusal line.

The second family is a toy causal LM defined here (a running mean of token embeddings, a tied head):
small enough that its float64 reference is four lines of numpy, and causal, so the interface's
`objective` means something. Nothing outside this module knows it exists.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from torch import nn

from vepcli.cli import cli
from vepcli.errors import UserError
from vepcli.infer import Engine, Request
from vepcli.modelcheck import load_checked
from vepcli.modelinfo import model_info
from vepcli.nn import Backbone, Family, register
from vepcli.nn.backbone import known_model_types
from vepcli.nn.checkpoint import load_model, save_model
from vepcli.nn.tokenizer import batch_encode, reverse_complement

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "caduceus-hf"


# ---------------------------------------------------------------- a toy causal family


@dataclass
class RunningMeanConfig:
    d_model: int = 8
    vocab_size: int = 16
    max_length: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunningMeanConfig:
        return cls(d["d_model"], d["vocab_size"], d.get("max_length"))

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": "running-mean", **asdict(self)}


class RunningMeanLM(Backbone):
    """h_t = tanh(W (1/t) sum_{s<=t} e(x_s)); logits_t = E h_t (the head is the embedding table)."""

    model_type = "running-mean"
    objective = "causal"

    def __init__(self, config: RunningMeanConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.mix = nn.Linear(config.d_model, config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        self.lm_head.weight = self.embedding.weight

    strands = "ph"
    arch = "running-mean"

    @property
    def n_layer(self) -> int:
        return 1

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        e = self.embedding(input_ids)
        t = torch.arange(1, input_ids.shape[1] + 1, device=e.device, dtype=e.dtype)[:, None]
        return torch.tanh(self.mix(e.cumsum(1) / t))

    def describe(self) -> dict[str, Any]:
        return {"architecture": "running mean", "d_model": self.config.d_model}


register(
    Family(
        "running-mean",
        RunningMeanConfig.from_dict,
        RunningMeanLM,
        tied=lambda _: re.compile(r"^lm_head\.weight$"),
    )
)


def reference_hidden(model: RunningMeanLM, seq: str) -> np.ndarray:
    """The toy's equation in float64 numpy, from its parameters."""
    ids = batch_encode([seq]).numpy()[0]
    e = model.embedding.weight.detach().double().numpy()[ids]
    w, b = (p.detach().double().numpy() for p in (model.mix.weight, model.mix.bias))
    mean = e.cumsum(0) / np.arange(1, len(ids) + 1)[:, None]
    return np.tanh(mean @ w.T + b)


@pytest.fixture
def toy(tmp_path: Path) -> tuple[RunningMeanLM, Path]:
    torch.manual_seed(0)
    model = RunningMeanLM(RunningMeanConfig(max_length=64)).eval()
    return model, save_model(model, tmp_path / "toy")


SEQ = "ACGTTGCAAGGCTTACGATCGGATCCANNACGT"


# ---------------------------------------------------------------- a second family drops in


def test_a_registered_family_saves_and_loads_in_the_published_layout(toy) -> None:
    model, folder = toy
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["model_type"] == "running-mean"
    assert "lm_head.weight" not in load_file(folder / "model.safetensors")  # tied: stored once
    loaded = load_model(folder)
    assert type(loaded) is RunningMeanLM and loaded.trained_length == 64
    assert loaded.lm_head.weight is loaded.embedding.weight  # re-tied, not a copy
    ids = batch_encode([SEQ])
    assert torch.equal(loaded(ids), model(ids))


def test_the_causal_toy_is_causal_and_matches_its_float64_equation(toy) -> None:
    model, _ = toy
    h = model.hidden_states(batch_encode([SEQ]))[0].detach().double().numpy()
    np.testing.assert_allclose(h, reference_hidden(model, SEQ), atol=1e-6)
    changed = model.hidden_states(batch_encode([SEQ[:20] + "T" * (len(SEQ) - 20)]))[0].detach()
    assert torch.equal(changed[:20], torch.from_numpy(h[:20]).float())  # positions after t change nothing up to t


def test_the_engine_pools_a_new_family_through_the_interface(toy) -> None:
    """Ph strand averaging on the toy: the engine's pooled vector equals the float64 average of the
    forward reading and the reverse-complement reading at the same bases, and a window and its reverse
    complement (span mirrored) pool to the same vector."""
    model, folder = toy
    span = (10, 20)
    L = len(SEQ)
    engine = Engine(load_model(folder), device="cpu")
    got = engine.run([Request(SEQ, pool=span)])[0].pooled
    fwd = reference_hidden(model, SEQ)[span[0] : span[1]].mean(0)
    rev = reference_hidden(model, reverse_complement(SEQ))[L - span[1] : L - span[0]].mean(0)
    assert got.shape == (model.hidden_width,)
    np.testing.assert_allclose(got.double().numpy(), 0.5 * (fwd + rev), atol=1e-6)
    mirrored = engine.run([Request(reverse_complement(SEQ), pool=(L - span[1], L - span[0]))])[0].pooled
    torch.testing.assert_close(mirrored, got, atol=1e-6, rtol=0)


def test_the_engine_refuses_masked_lm_log_probabilities_from_a_causal_model(toy) -> None:
    _, folder = toy
    with pytest.raises(UserError, match="need a masked LM"):
        Engine(load_model(folder), device="cpu").run([Request(SEQ, logp_at=(5,), mask=(5,))])


def test_the_engine_refuses_a_strand_handling_it_does_not_run(toy) -> None:
    model, _ = toy

    class Echo(RunningMeanLM):
        strands = "echo"

    with pytest.raises(UserError, match="'echo'"):
        Engine(Echo(model.config), device="cpu")


def test_model_info_describes_a_new_family(toy) -> None:
    model, folder = toy
    facts = model_info(str(folder))
    assert facts["family"] == "running-mean" and facts["objective"] == "causal LM"
    assert facts["strands"].startswith("ph") and facts["architecture"] == "running mean"
    assert facts["pooled_width"] == 8 and facts["max_length"] == 64
    assert facts["parameters"] == sum(p.numel() for p in model.state_dict().values()) - 16 * 8  # head tied


# ---------------------------------------------------------------- Caduceus through the interface


@pytest.mark.parametrize("arch", ["ps", "ph"])
def test_caduceus_declares_itself_through_the_interface(arch: str) -> None:
    folder = FIXTURES / f"caduceus-{arch}-tiny"
    model = load_model(folder)
    config = json.loads((folder / "config.json").read_text())
    assert isinstance(model, Backbone) and model.objective == "masked" and model.strands == arch
    assert model.hidden_width == config["d_model"] and model.n_layer == config["n_layer"]
    assert model.trained_length == config.get("max_length")
    ids = batch_encode(["ACGTTGCAAGGCTTACG"])
    hidden = model.hidden_states(ids)
    assert hidden.shape[-1] == (2 if arch == "ps" else 1) * model.hidden_width
    assert torch.equal(model.lm_logits(hidden), model(ids))
    facts = model_info(str(folder))
    assert (facts["family"], facts["objective"], facts["strands"][:2]) == ("caduceus", "masked LM", arch)


# ---------------------------------------------------------------- refusals


def test_an_unknown_model_type_is_one_refusal_naming_the_known_ones(tmp_path: Path) -> None:
    folder = save_model(load_model(FIXTURES / "caduceus-ps-tiny"), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "hyena"}))
    for load in (load_model, load_checked):
        with pytest.raises(UserError) as err:
            load(folder)
        message = str(err.value)
        assert "'hyena'" in message and "\n" not in message
        assert all(name in message for name in known_model_types()) and "caduceus" in message
    result = CliRunner().invoke(cli, ["model", "info", str(folder)])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("vepcli: error: "), result.stderr
    assert "'hyena'" in lines[0] and "known: " in lines[0]


def test_model_info_json_carries_the_interface_fields(toy) -> None:
    _, folder = toy
    result = CliRunner().invoke(cli, ["model", "info", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    assert list(facts)[:4] == ["path", "family", "objective", "strands"]
    assert (facts["family"], facts["objective"]) == ("running-mean", "causal LM")
