"""DNA-xLSTM forward (and forward + backward) time on CPU, side by side with Caduceus at about the same size,
and with the public DNA-xLSTM code's CPU path when its sources are given.

Models (random weights, masked LMs, batch 1, float32), d_model 128, 4 blocks (the size of the published
"500k" models):
  - xlstm-m-ph: 4 mLSTM blocks, rotary, PH;     - xlstm-ms-ph: mLSTM blocks with an sLSTM block at 1, PH;
  - xlstm-s-ps: 4 sLSTM blocks, PS;             - caduceus-ph / caduceus-ps: d_model 128, 4 layers (BiMamba).
With --public SRC (an unpacked ml-jku/DNA-xLSTM with its torch >= 2.6 fix; see
tests/fixtures/dna-xlstm/README.md, which also says what else its imports need on PYTHONPATH), the public
xLSTMLMHeadModel with the same weights (sLSTM on its "vanilla" PyTorch backend) runs too. Each timing is
the minimum over repeats, the contenders measured in alternation, so a busy machine hurts all alike.

    python bench/xlstm.py [--length 1024] [--threads 1] [--repeats 3] [--train] [--public SRC]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from vepcli.nn import CaduceusConfig, CaduceusForMaskedLM
from vepcli.nn.xlstm import build
from vepcli.nn.xlstm_config import XLSTMConfig
from vepcli.nn.xlstm_published import load_published

XLSTM = {  # the public training script's settings (scripts_pretrain/run_pretrain_xlstm.sh)
    "xlstm-m-ph": dict(s_lstm_at=[], rcps=False),
    "xlstm-ms-ph": dict(s_lstm_at=[1], rcps=False),
    "xlstm-s-ps": dict(s_lstm_at=[0, 1, 2, 3], rcps=True),
}
COMMON = dict(
    d_model=128,
    n_layer=4,
    m_position_embeddings=True,
    m_bias=True,
    s_proj_factor=1.1,
    s_round_proj_up_dim_up=False,
    s_round_proj_up_to_multiple_of=8,
)


def public_pair(src: str, name: str, length: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the public xLSTMLMHeadModel, vepcli's model) with the same weights: the public model writes its
    published folder (tests/fixtures/dna-xlstm/make_fixture.py) and vepcli reads it back."""
    sys.path.insert(0, src)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "dna-xlstm"))
    import make_fixture  # the public imports and their stand-ins, only when asked for

    cfg = dict(make_fixture.BASE, **COMMON, **XLSTM[name], max_length=length, m_backend="chunkwise")
    cfg["m_chunk_size"] = length  # as the public script trains: one chunk as long as the context
    folder = Path(tempfile.mkdtemp())
    make_fixture.make(name, cfg, str(folder))
    return make_fixture.perturbed(cfg).eval(), load_published(folder / name)


def contenders(args: argparse.Namespace) -> dict[str, tuple[torch.nn.Module, Callable]]:
    torch.manual_seed(0)
    out = {}
    for name, over in XLSTM.items():
        if args.public:
            pub, model = public_pair(args.public, name, args.length)
            out[f"public {name}"] = (pub, lambda ids, pub=pub: pub(ids).logits)
        else:
            model = build(XLSTMConfig(**COMMON, **over, max_length=args.length)).eval()
        out[name] = (model, model)
    for rcps in (False, True):
        model = CaduceusForMaskedLM(CaduceusConfig(d_model=128, n_layer=4, rcps=rcps, max_length=args.length)).eval()
        out["caduceus-ps" if rcps else "caduceus-ph"] = (model, model)
    return out


def step(run, ids: torch.Tensor, train: bool) -> float:
    start = time.perf_counter()
    if train:
        run(ids).logsumexp(-1).mean().backward()
    else:
        with torch.no_grad():
            run(ids)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train", action="store_true", help="time forward + backward (pretraining's step)")
    parser.add_argument("--public", help="an unpacked ml-jku/DNA-xLSTM (with the torch >= 2.6 fix)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = contenders(args)
    ids = torch.randint(7, 11, (1, args.length))
    times = {name: [] for name in models}
    for _name, (_, run) in models.items():  # warm-up (our CPU conv kernel builds on first use)
        step(run, ids, args.train)
    for _ in range(args.repeats):
        for name, (_, run) in models.items():
            times[name].append(step(run, ids, args.train))
    mode = "forward + backward" if args.train else "forward"
    print(f"# {mode}, batch 1, L {args.length}, {args.threads} thread(s), min of {args.repeats}")
    print("| model | parameters | seconds | tokens/s |")
    print("| --- | --- | --- | --- |")
    for name, (model, _) in models.items():
        params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        best = min(times[name])
        print(f"| {name} | {params:,} | {best:.3f} | {args.length / best:,.0f} |")


if __name__ == "__main__":
    main()
