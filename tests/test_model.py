"""The Caduceus model layer against the published fixtures, a float64 reference and its symmetries."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vepcli.api import strand_average
from vepcli.errors import UserError
from vepcli.nn import CaduceusConfig, CaduceusForMaskedLM
from vepcli.nn.checkpoint import load_model, read_state_dict, save_model
from vepcli.nn.kernels import selective_scan_reference
from vepcli.nn.kernels.torch_scan import selective_scan_torch as selective_scan
from vepcli.nn.tokenizer import COMPLEMENT, reverse_complement_ids

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "caduceus-hf"  # vendored, see its README.md
ARCHS = ["ps", "ph"]


def fixture_dir(arch: str) -> Path:
    return FIXTURES / f"caduceus-{arch}-tiny"


def randomised_model(rcps: bool, d_model: int = 16, n_layer: int = 2, seed: int = 0) -> CaduceusForMaskedLM:
    """A random model with every parameter non-trivial (norms, D, biases), so layout mistakes show."""
    torch.manual_seed(seed)
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=d_model, n_layer=n_layer, rcps=rcps))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "norm_f.weight", ".D", "conv1d.bias")):
                p.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_fixture_outputs_reproduced(arch: str) -> None:
    expected = load_file(fixture_dir(arch) / "expected.safetensors")
    model = load_model(fixture_dir(arch))
    with torch.no_grad():
        logits, hidden = model(expected["input_ids"], return_hidden=True)
    torch.testing.assert_close(hidden, expected["last_hidden_state"], atol=1e-4, rtol=0)
    torch.testing.assert_close(logits, expected["logits"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_tied_tensors_are_retied(arch: str) -> None:
    """The files omit mamba_rev's projections and the LM head; the loader must make them shared tensors."""
    path = fixture_dir(arch)
    on_disk = read_state_dict(path)
    assert not any("mamba_rev.in_proj" in k or "mamba_rev.out_proj" in k for k in on_disk)
    model = load_model(path)
    rcps = model.config.rcps
    for layer in model.caduceus.backbone.layers:
        mixer = layer.mixer.submodule if rcps else layer.mixer
        assert mixer.mamba_rev.in_proj.weight is mixer.mamba_fwd.in_proj.weight
        assert mixer.mamba_rev.out_proj.weight is mixer.mamba_fwd.out_proj.weight
    emb = model.caduceus.backbone.embeddings.word_embeddings
    assert model.lm_head.weight is emb.weight
    # an untied LM head or reverse projection gives different numbers, which the fixture test catches
    expected = load_file(path / "expected.safetensors")
    ids, want = expected["input_ids"], expected["logits"]
    head = model.lm_head.lm_head if rcps else model.lm_head
    head.weight = torch.nn.Parameter(head.weight.detach().clone().normal_())
    with torch.no_grad():
        assert (model(ids) - want).abs().max() > 1e-2
    model = load_model(path)
    mixer = model.caduceus.backbone.layers[0].mixer
    mixer = mixer.submodule if rcps else mixer
    mixer.tied = False  # the general path, which reads mamba_rev's own projections
    with torch.no_grad():
        torch.testing.assert_close(model(ids), want, atol=1e-4, rtol=0)
        mixer.mamba_rev.in_proj.weight = torch.nn.Parameter(torch.randn_like(mixer.mamba_fwd.in_proj.weight))
        assert (model(ids) - want).abs().max() > 1e-2


def test_ps_reverse_complement_equivariance() -> None:
    model = randomised_model(rcps=True)
    ids = torch.randint(7, 12, (3, 150))
    with torch.no_grad():
        logits, hidden = model(ids, return_hidden=True)
        logits_rc, hidden_rc = model(reverse_complement_ids(ids), return_hidden=True)
    torch.testing.assert_close(hidden_rc, hidden.flip(-2, -1), atol=1e-5, rtol=0)
    # logits(rc(x))[l, v] = logits(x)[L-1-l, comp(v)]
    torch.testing.assert_close(logits_rc, logits.flip(-2)[..., COMPLEMENT], atol=1e-5, rtol=0)


def test_ps_strand_average_is_strand_invariant() -> None:
    model = randomised_model(rcps=True)
    ids = torch.randint(7, 12, (2, 90))
    with torch.no_grad():
        h, h_rc = model.caduceus(ids), model.caduceus(reverse_complement_ids(ids))
    fwd, rev = strand_average(h, None, rcps=True), strand_average(h_rc, None, rcps=True)
    torch.testing.assert_close(rev, fwd.flip(-2), atol=1e-5, rtol=0)
    assert fwd.shape[-1] == 16 and (h[..., :16] - fwd).abs().max() > 1e-3


def test_ph_strand_average_is_strand_invariant() -> None:
    model = randomised_model(rcps=False)
    ids = torch.randint(7, 12, (2, 90))
    with torch.no_grad():
        h, h_rc = model.caduceus(ids), model.caduceus(reverse_complement_ids(ids))
    fwd = strand_average(h, h_rc, rcps=False)
    rev = strand_average(h_rc, h, rcps=False)  # the same averaging, started from the other strand
    torch.testing.assert_close(rev, fwd.flip(-2), atol=1e-6, rtol=0)
    assert (h - h_rc.flip(-2)).abs().max() > 1e-3  # Ph alone is not strand-invariant


def test_batch_and_padding_invariance() -> None:
    """A sequence gives the same output alone or in a batch (no cross-talk between rows)."""
    model = randomised_model(rcps=True)
    ids = torch.randint(7, 12, (5, 70))
    with torch.no_grad():
        together = model(ids)
        alone = torch.cat([model(ids[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("L", [1, 5, 63, 64, 65, 130, 257])
@pytest.mark.parametrize("chunk", [16, 64])
def test_scan_matches_float64_reference(L: int, chunk: int) -> None:
    g = torch.Generator().manual_seed(L * 100 + chunk)
    b, D, N = 2, 12, 8
    u, delta, z = (torch.randn(b, L, D, generator=g) for _ in range(3))
    B, C = (torch.randn(b, L, N, generator=g) for _ in range(2))
    A = -torch.rand(D, N, generator=g) * 4
    Dp, bias = torch.randn(D, generator=g), torch.randn(D, generator=g)
    y = selective_scan(u, delta, A, B, C, Dp, z, bias, True, chunk=chunk)
    ref = selective_scan_reference(u, delta, A, B, C, Dp, z, bias, True)
    assert y.dtype == torch.float32
    rel = (y.double() - ref).abs().max() / ref.abs().max()
    assert rel < 1e-4


def test_scan_gradients_match_reference_in_float64() -> None:
    g = torch.Generator().manual_seed(1)
    b, L, D, N = 2, 37, 6, 4
    inputs = [
        torch.randn(b, L, D, generator=g, dtype=torch.float64),
        torch.randn(b, L, D, generator=g, dtype=torch.float64),
        -torch.rand(b, D, N, generator=g, dtype=torch.float64) * 3,  # per-row A, as BiMamba uses
        torch.randn(b, L, N, generator=g, dtype=torch.float64),
        torch.randn(b, L, N, generator=g, dtype=torch.float64),
    ]
    ours = [t.clone().requires_grad_() for t in inputs]
    refs = [t.clone().requires_grad_() for t in inputs]
    y = selective_scan(*ours, chunk=8)
    y_ref = selective_scan_reference(*refs)
    weight = torch.randn_like(y)
    grads = torch.autograd.grad((y * weight).sum(), ours)
    grads_ref = torch.autograd.grad((y_ref * weight).sum(), refs)
    for ga, gb in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(ga, gb, atol=1e-9, rtol=1e-9)


def test_model_gradients_flow() -> None:
    model = randomised_model(rcps=True).train()
    ids = torch.randint(7, 11, (2, 40))
    loss = torch.nn.functional.cross_entropy(model(ids).reshape(-1, 16), ids.reshape(-1))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("rcps", [True, False])
def test_save_reload_same_outputs_and_published_keys(tmp_path: Path, rcps: bool) -> None:
    model = randomised_model(rcps=rcps)
    save_model(model, tmp_path / "m")
    reloaded = load_model(tmp_path / "m")
    ids = torch.randint(7, 12, (2, 50))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids), model(ids), atol=0, rtol=0)
    arch = "ps" if rcps else "ph"
    published = set(read_state_dict(fixture_dir(arch)))
    ours = set(read_state_dict(tmp_path / "m"))
    strip = {k.replace("layers.0.", "layers.X.").replace("layers.1.", "layers.X.") for k in ours}
    pub = {k for k in published if "layers.2." not in k}
    pub = {k.replace("layers.0.", "layers.X.").replace("layers.1.", "layers.X.") for k in pub}
    assert strip == pub
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["model_type"] == "caduceus" and cfg["rcps"] is rcps and "auto_map" in cfg


def test_corrupted_checkpoint_is_one_line_error(tmp_path: Path) -> None:
    dst = tmp_path / "bad"
    shutil.copytree(fixture_dir("ps"), dst)
    data = (dst / "model.safetensors").read_bytes()
    (dst / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        load_model(dst)
    assert "\n" not in str(err.value) and "model.safetensors" in str(err.value)


def test_mismatched_config_is_one_line_error(tmp_path: Path) -> None:
    dst = tmp_path / "mismatch"
    shutil.copytree(fixture_dir("ph"), dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["d_model"] = 32
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="do not match its config.json"):
        load_model(dst)
    cfg["d_model"], cfg["bidirectional_strategy"] = 24, "concat"
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="bidirectional_strategy"):
        load_model(dst)


def test_hub_id_resolves_from_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "hub" / "models--kuleshov-group--caduceus-tiny"
    snap = repo / "snapshots" / "0123abc"
    shutil.copytree(fixture_dir("ps"), snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_model("kuleshov-group/caduceus-tiny")
    assert model.config.rcps and model.config.d_model == 24
    with pytest.raises(UserError, match="not in the local Hugging Face cache"):
        load_model("kuleshov-group/absent-model")


def test_long_input_runs_in_bounded_memory(tmp_path: Path) -> None:
    """131,072 tokens through a small PS model: peak memory stays far below a (B, L, D, N) tensor."""
    import subprocess
    import sys

    code = (
        "import resource, torch\n"
        "from vepcli.nn import CaduceusConfig, CaduceusForMaskedLM\n"
        "torch.set_num_threads(1)\n"
        "cfg = CaduceusConfig(d_model=8, n_layer=1, rcps=True, ssm_cfg={'d_state': 64})\n"
        "m = CaduceusForMaskedLM(cfg).eval()\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "with torch.no_grad(): out = m(torch.randint(7, 11, (1, 131072)))\n"
        "assert torch.isfinite(out).all()\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
    )
    peak_mb = int(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    )
    # the states of one layer, (4 rows, L, d_inner 16, N 64) in fp32, would take 2 GiB by themselves
    state_mb = 4 * 131072 * 16 * 64 * 4 // 2**20
    assert peak_mb < state_mb / 2, peak_mb


def test_outputs_are_bitwise_independent_of_batch_mates() -> None:
    """A window gives the very same bits alone or in any batch: sharded runs must equal unsharded ones."""
    model = load_model(fixture_dir("ps"))
    ids = torch.randint(7, 11, (8, 300), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model.caduceus(ids)
        for n in (1, 3, 5):
            assert torch.equal(model.caduceus(ids[:n]), full[:n])
