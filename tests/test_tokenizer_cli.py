"""Tokenizer ids and complement map as published, and the CLI's basic contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from vepcli import __version__
from vepcli.nn.tokenizer import (
    COMPLEMENT,
    PAD,
    UNK,
    batch_encode,
    decode,
    encode,
    reverse_complement,
    reverse_complement_ids,
)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "caduceus-hf"


def test_published_ids_and_case() -> None:
    assert encode("ACGTN").tolist() == [7, 8, 9, 10, 11]
    assert encode("acgtn").tolist() == [7, 8, 9, 10, 11]
    assert encode("R-").tolist() == [UNK, UNK]


def test_complement_map_matches_published_config() -> None:
    import json

    cfg = json.loads((FIXTURES / "caduceus-ps-tiny" / "config.json").read_text())
    published = {int(k): v for k, v in cfg["complement_map"].items()}
    assert {i: int(COMPLEMENT[i]) for i in range(16)} == published


def test_reverse_complement_agrees_on_strings_and_ids() -> None:
    seq = "AACGTNTTGCa"
    assert reverse_complement(seq) == "tGCAANACGTT"
    ids = torch.from_numpy(encode(seq))
    assert decode(reverse_complement_ids(ids)) == reverse_complement(seq).upper()


def test_batch_encode_pads_left() -> None:
    ids = batch_encode(["ACG", "A"])
    assert ids.tolist() == [[7, 8, 9], [PAD, PAD, 7]]


def vepcli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vepcli", *args], capture_output=True, text=True)


def test_version_and_help_list_commands() -> None:
    out = vepcli("--version")
    assert out.returncode == 0 and __version__ in out.stdout
    help_text = vepcli("--help").stdout
    for command in ("score", "embed", "probe", "pretrain", "finetune", "merge", "model"):
        assert command in help_text


def test_model_info_reports_published_facts() -> None:
    out = vepcli("model", "info", str(FIXTURES / "caduceus-ps-tiny"), "--json")
    assert out.returncode == 0, out.stderr
    import json

    facts = json.loads(out.stdout)
    assert facts["d_model"] == 24 and facts["n_layer"] == 3 and facts["hidden_width"] == 48
    assert facts["variant"].startswith("PS")
    bad = vepcli("model", "info", "/no/such/dir")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "error" in bad.stderr
