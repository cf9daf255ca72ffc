"""Tokenizer ids and complement map as published, and the CLI's basic contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
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

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "caduceus-hf"  # vendored, see its README.md


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
    for command in ("score", "embed", "probe", "pretrain", "finetune", "merge", "model", "tools"):
        assert command in help_text


def test_help_loads_neither_torch_nor_pandas() -> None:
    """`vepcli --help` and the help of every command stay quick: the heavy imports wait inside the commands."""
    code = """
import sys
from click.testing import CliRunner
from vepcli.cli import cli
runs = [[], ["merge"], ["score"], ["embed"], ["probe"], ["probe", "train"], ["probe", "eval"], ["pretrain"],
        ["finetune"], ["model", "info"], ["tools"], ["tools", "kmer-baseline"], ["tools", "compare-finetune"]]
for args in runs:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output, (args, result.output)
print(" ".join(m for m in ("torch", "pandas", "numpy", "sklearn", "pyarrow") if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [], f"imported by the CLI's help: {proc.stdout}"


def test_model_info_without_a_model_shows_the_default_one(monkeypatch) -> None:
    """The bundled model (models/ of the checkout here; vepcli/models/ in a wheel), or $VEPCLI_MODEL."""
    import json

    from click.testing import CliRunner

    from vepcli.cli import cli

    monkeypatch.delenv("VEPCLI_MODEL", raising=False)
    result = CliRunner().invoke(cli, ["model", "info", "--json"])
    assert result.exit_code == 0, result.output
    bundled = Path(json.loads(result.output)["path"])
    assert bundled == Path(__file__).resolve().parents[1] / "models" / "caduceus-ps-chr22-small"
    monkeypatch.setenv("VEPCLI_MODEL", str(FIXTURES / "caduceus-ph-tiny"))
    result = CliRunner().invoke(cli, ["model", "info", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["path"] == str(FIXTURES / "caduceus-ph-tiny")


def test_shell_completion_lists_commands_and_options() -> None:
    """click's completion, as README.md sets it up: `eval "$(_VEPCLI_COMPLETE=bash_source vepcli)"`."""
    from click.testing import CliRunner

    from vepcli.cli import cli

    def complete(words: str, env: str = "bash_complete") -> str:
        cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
        result = CliRunner().invoke(
            cli, [], prog_name="vepcli", env={"_VEPCLI_COMPLETE": env, "COMP_WORDS": words, "COMP_CWORD": cword}
        )
        assert result.exit_code == 0, result.output
        return result.output

    assert "_vepcli_completion" in complete("", "bash_source")
    assert complete("vepcli sc").split() == ["plain,score"]
    tools = set(complete("vepcli tools ").split())
    assert {"plain,kmer-baseline", "plain,model-card", "plain,compare-finetune"} <= tools
    assert "plain,--scores" in complete("vepcli score --sc").split()


@pytest.mark.slow  # a subprocess
def test_model_info_reports_published_facts() -> None:
    out = vepcli("model", "info", str(FIXTURES / "caduceus-ps-tiny"), "--json")
    assert out.returncode == 0, out.stderr
    import json

    facts = json.loads(out.stdout)
    assert facts["d_model"] == 24 and facts["n_layer"] == 3
    assert facts["state_width"] == 48 and facts["pooled_width"] == 24
    assert facts["variant"].startswith("PS")
    bad = vepcli("model", "info", "/no/such/dir")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "error" in bad.stderr
