"""Forward-pass time of the 131k Caduceus configuration on CPU, side by side with the peer.

Models (random weights, d_model 256, 16 layers, d_state 16, expand 2, batch 1, float32, no grad):
  - vepcli Caduceus-PS and Caduceus-Ph (bi-directional: 4 and 2 Mamba passes per layer);
  - vepcli Mamba stack: 16 pre-norm uni-directional Mamba blocks, the same shape as the peer;
  - peer: Hugging Face `transformers` MambaModel, its pure-PyTorch path (no CUDA kernels);
  - matmul floor: only the matrix products each vepcli model performs, timed alone.
Each vepcli model runs once per scan backend of --scans (VEPCLI_SCAN: `cpu` is our compiled kernel,
`torch` the pure-PyTorch scan of version 0.1). Timings are the minimum over repeats, measured in
alternation, so a busy machine hurts all alike.

    python bench/forward.py [--lengths 1024,8192,32768] [--threads 1] [--scans cpu,torch] [--out bench/out/forward.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from vepcli.nn import CaduceusConfig, CaduceusForMaskedLM
from vepcli.nn.mamba import Mamba
from vepcli.nn.norm import RMSNorm

D_MODEL, N_LAYER, D_INNER, D_STATE, DT_RANK = 256, 16, 512, 16, 16


class MambaStack(nn.Module):
    """Uni-directional pre-norm Mamba blocks built from vepcli's mixer: the peer's architecture."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(16, D_MODEL)
        self.norms = nn.ModuleList(RMSNorm(D_MODEL) for _ in range(N_LAYER))
        self.mixers = nn.ModuleList(Mamba(D_MODEL) for _ in range(N_LAYER))
        self.norm_f = RMSNorm(D_MODEL)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embedding(ids)
        for norm, mixer in zip(self.norms, self.mixers, strict=True):
            h = h + mixer(norm(h))
        return self.norm_f(h)


def peer_model() -> nn.Module | None:
    try:
        from transformers import MambaConfig, MambaModel
    except ImportError:
        return None
    cfg = MambaConfig(
        vocab_size=16,
        hidden_size=D_MODEL,
        num_hidden_layers=N_LAYER,
        state_size=D_STATE,
        expand=2,
        conv_kernel=4,
        time_step_rank=DT_RANK,
        use_mambapy=False,
    )
    model = MambaModel(cfg).eval()
    return lambda ids: model(input_ids=ids, use_cache=False).last_hidden_state


def matmul_floor(rows_in: int, rows_scan: int, L: int):
    """The linear maps of one layer, for all layers: in_proj and out_proj on `rows_in` rows,
    x_proj and dt_proj on `rows_scan` rows (each direction and strand)."""
    x = torch.randn(rows_in * L, D_MODEL)
    y = torch.randn(rows_in * L, D_INNER)
    u = torch.randn(rows_scan * L, D_INNER)
    dt = torch.randn(rows_scan * L, DT_RANK)
    w_in, w_out = torch.randn(2 * D_INNER, D_MODEL), torch.randn(D_MODEL, D_INNER)
    w_x, w_dt = torch.randn(DT_RANK + 2 * D_STATE, D_INNER), torch.randn(D_INNER, DT_RANK)

    def run(_ids):
        for _ in range(N_LAYER):
            x @ w_in.t()
            y @ w_out.t()
            u @ w_x.t()
            dt @ w_dt.t()

    return run


def with_scan(scan: str, fn):
    """fn with the scan backend forced to `scan` while it runs."""

    def run(ids):
        os.environ["VEPCLI_SCAN"] = scan
        try:
            return fn(ids)
        finally:
            del os.environ["VEPCLI_SCAN"]

    return run


def best_time(fn, ids, repeats: int) -> float:
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            fn(ids)
            times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="1024,8192,32768")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scans", default="cpu,torch", help="scan backends for the vepcli models (VEPCLI_SCAN values)")
    ap.add_argument("--out", default="bench/out/forward.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ps = CaduceusForMaskedLM(CaduceusConfig(d_model=D_MODEL, n_layer=N_LAYER, rcps=True)).eval()
    ph = CaduceusForMaskedLM(CaduceusConfig(d_model=D_MODEL, n_layer=N_LAYER, rcps=False)).eval()
    stack = MambaStack().eval()
    peer = peer_model()
    results = []
    for L in (int(x) for x in args.lengths.split(",")):
        ids = torch.randint(7, 11, (1, L))
        candidates = {}
        for scan in args.scans.split(","):
            for name, fn in (
                ("Caduceus-PS", ps.caduceus),
                ("Caduceus-Ph", ph.caduceus),
                ("Mamba stack (peer's shape)", stack),
            ):
                candidates[f"vepcli {name} [{scan}]"] = with_scan(scan, fn)
        candidates.update(
            {
                "matmul floor PS": matmul_floor(2, 4, L),
                "matmul floor Ph": matmul_floor(1, 2, L),
                "matmul floor Mamba stack": matmul_floor(1, 1, L),
            }
        )
        if peer is not None:
            candidates["peer: transformers MambaModel (torch path)"] = peer
        repeats = 3 if L <= 8192 else 2
        for fn in candidates.values():  # warm-up
            best_time(fn, ids[:, : min(L, 256)], 1)
        timings = {name: float("inf") for name in candidates}
        for _ in range(repeats):  # alternate, so load on the machine hits everyone alike
            for name, fn in candidates.items():
                timings[name] = min(timings[name], best_time(fn, ids, 1))
        for name, t in timings.items():
            results.append({"L": L, "model": name, "seconds": round(t, 4), "tokens_per_s": round(L / t, 1)})
            print(f"L={L:>6}  {name:<45} {t:8.3f} s  {L / t:10.0f} tok/s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(
            {"threads": args.threads, "torch": torch.__version__, "scans": args.scans, "results": results}, indent=1
        )
    )


if __name__ == "__main__":
    main()
