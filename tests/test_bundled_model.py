"""The bundled default model is what its card says: the card's held-out figures are recomputed from the
shipped weights, on the windows and masks the card's own command names, from the project's human DNA."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vepcli.defaults import DEFAULT_MODEL_NAME
from vepcli.genome import Genome
from vepcli.modelcheck import load_checked
from vepcli.nn.hub import bundled_model_dir
from vepcli.train.baseline import score_model
from vepcli.train.data import split_intervals, validation_set

ROOT = Path(__file__).resolve().parents[1]


def card_command(card: str) -> dict[str, str]:
    """The options of the `vepcli pretrain` command the card says made the model."""
    line = next(ln.strip() for ln in card.splitlines() if ln.strip().startswith("vepcli pretrain "))
    words = shlex.split(line)[2:]
    return {words[i]: words[i + 1] for i in range(len(words) - 1) if words[i].startswith("--")}


def card_figure(pattern: str, card: str) -> float:
    found = re.search(pattern, card)
    assert found, f"the card lacks {pattern!r}"
    return float(found.group(1))


@pytest.mark.slow  # reads the held-out region of ../shared/data and runs the model over it
def test_card_figures_are_what_the_shipped_weights_give():
    folder = bundled_model_dir(DEFAULT_MODEL_NAME)
    assert folder is not None
    card = (folder / "MODEL_CARD.md").read_text()
    opts = card_command(card)
    fasta = ROOT / opts["--fasta"]  # the command names it relative to where it ran: a folder beside ../shared
    if not fasta.is_file():
        pytest.skip(f"{fasta} (the project's shared data) is not beside this checkout")
    genome = Genome(fasta)
    _, val_iv = split_intervals(genome, val_regions=[opts["--val-region"]])
    val = validation_set(genome, val_iv, int(opts["--seq-len"]), int(opts["--val-windows"]), int(opts["--seed"]))
    _, model, sha256 = load_checked(str(folder))
    got = score_model(str(folder), model, sha256, val, "masked")

    assert model.trained_length == int(opts["--seq-len"])
    assert model.describe()["d_state"] == int(opts["--d-state"])
    # Kernels differ in their last bits between CPU kinds (AVX2, AVX-512): a few of ~20k argmaxes may flip.
    assert got["val_acc_masked"] == pytest.approx(
        card_figure(r"\*\*this model\*\* \| \*\*([0-9.]+)\*\*", card), abs=3e-4
    )
    assert got["val_acc"] == pytest.approx(
        card_figure(r"\*\*this model\*\* \| \*\*[0-9.]+\*\* \| \*\*([0-9.]+)", card), abs=3e-4
    )
    assert got["val_loss"] == pytest.approx(card_figure(r"Validation loss ([0-9.]+) nats", card), abs=2e-4)
