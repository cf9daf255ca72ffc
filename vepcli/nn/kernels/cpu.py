"""Our compiled CPU selective scan: `cpu_scan.cpp`, built on first use with the system C++ compiler.

Why a plain shared library through ctypes: it needs nothing but g++ or clang++ (no torch headers, no
pybind, no ninja), builds in about two seconds, and ctypes releases the GIL while it runs. The library is compiled for
the machine it runs on (`-march=native`) and cached under a name that includes the source, the
compiler and the CPU's features, so a home directory shared by different cluster nodes never loads
a build made for another CPU. Where no compiler or no cache directory is usable, `available()` is
False, one warning says why, and the dispatch falls back to the pure-PyTorch scan.

Cache: `$VEPCLI_CACHE_DIR`, else `$XDG_CACHE_HOME/vepcli`, else `~/.cache/vepcli`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("cpu_scan.cpp")
CFLAGS = ["-O3", "-march=native", "-fPIC", "-shared", "-pthread", "-fno-exceptions", "-fno-rtti"]


def cache_dir() -> Path:
    if os.environ.get("VEPCLI_CACHE_DIR"):
        return Path(os.environ["VEPCLI_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vepcli"


def _cpu_identity() -> str:
    """The CPU's model and feature flags: a build for one CPU is never loaded on another."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "\n".join(sorted({ln for ln in lines if ln.startswith(("flags", "model name", "Features"))}))
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> str | None:
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _build() -> Path:
    """Compile cpu_scan.cpp into the cache (atomically: concurrent jobs may build at once) and return it."""
    cc = _compiler()
    if cc is None:
        raise OSError("no C++ compiler found: install g++ (Debian/Ubuntu: apt-get install g++) or set CXX")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256("\0".join([SOURCE.read_text(), " ".join(CFLAGS), version, _cpu_identity(),
                                    platform.machine()]).encode()).hexdigest()[:16]
    target = cache_dir() / f"cpu_scan-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cc, *CFLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True)
        if proc.returncode != 0:
            raise OSError(f"{Path(cc).name} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


_F = ctypes.c_void_p
_I = ctypes.c_int64


@functools.cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("VEPCLI_NO_CPU_KERNEL"):
        return None
    try:
        lib = ctypes.CDLL(str(_build()))
    except (OSError, subprocess.SubprocessError) as err:
        print(f"vepcli: warning: CPU scan kernel unavailable ({err}); using the slower pure-PyTorch scan",
              file=sys.stderr)
        return None
    lib.vepcli_scan_fwd.argtypes = [_F] * 10 + [_I] * 6 + [ctypes.c_int, ctypes.c_int]
    lib.vepcli_scan_bwd.argtypes = [_F] * 18 + [_I] * 6 + [ctypes.c_int, _I, ctypes.c_int]
    return lib


def available() -> bool:
    """True when the kernel is compiled (or cached) and loaded."""
    return _library() is not None


def chunk() -> int:
    """Steps between the states saved for the backward pass."""
    return _library().vepcli_scan_chunk()


def _ptr(t: torch.Tensor | None) -> int | None:
    """The address of a contiguous fp32 tensor that the caller keeps alive during the call."""
    return None if t is None else t.data_ptr()


def _f32(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to(torch.float32).contiguous()


def _row_strides(A: torch.Tensor, P: torch.Tensor | None, dim: int, N: int) -> tuple[int, int]:
    """Row strides of A and of the per-channel vectors: 0 when shared by the batch."""
    a_rs = dim * N if A.dim() == 3 else 0
    p_rs = dim if P is not None and P.dim() == 3 else 0
    return a_rs, p_rs


def _threads(work_items: int) -> int:
    return max(1, min(torch.get_num_threads(), work_items))


def _forward(u, delta, A, B, C, D, z, bias, softplus: bool, keep_states: bool):
    batch, L, dim = u.shape
    N = A.shape[-1]
    if D is not None and bias is not None and (D.dim() == 3) != (bias.dim() == 3):
        bias = bias.expand(batch, 1, dim).contiguous() if bias.dim() != 3 else bias
        D = D.expand(batch, 1, dim).contiguous() if D.dim() != 3 else D
    a_rs, p_rs = _row_strides(A, D if D is not None else bias, dim, N)
    y = torch.empty_like(u)
    n_chunks = -(-L // chunk())
    states = u.new_empty(batch, n_chunks, N, dim) if keep_states else None
    _library().vepcli_scan_fwd(_ptr(u), _ptr(delta), _ptr(A), _ptr(B), _ptr(C), _ptr(D), _ptr(z), _ptr(bias),
                               _ptr(y), _ptr(states), batch, L, dim, N, a_rs, p_rs, int(softplus),
                               _threads(batch * dim))
    return y, states, D, bias


class _SelectiveScanCPU(torch.autograd.Function):
    """The fused scan with the kernel's own backward (states kept every chunk, steps recomputed)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, bias, softplus):
        ins = [_f32(t) for t in (u, delta, A, B, C, D, z, bias)]
        y, states, D32, bias32 = _forward(*ins, softplus, keep_states=True)
        ins[5], ins[7] = D32, bias32
        ctx.save_for_backward(*ins, states)
        ctx.softplus = softplus
        ctx.shapes = [None if t is None else (t.shape, t.dtype) for t in (u, delta, A, B, C, D, z, bias)]
        return y.to(u.dtype)

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, D, z, bias, states = ctx.saved_tensors
        batch, L, dim = u.shape
        N = A.shape[-1]
        groups = max(1, min(8, -(-dim // 16)))  # dB, dC partial sums: few enough to stay small
        a_rs, p_rs = _row_strides(A, D if D is not None else bias, dim, N)
        du, ddelta = torch.empty_like(u), torch.empty_like(u)
        dz = torch.empty_like(u) if z is not None else None
        dA = u.new_empty(batch, dim, N)
        dD, dbias = u.new_empty(batch, dim), u.new_empty(batch, dim)
        dB_part, dC_part = (u.new_zeros(batch, groups, L, N) for _ in range(2))
        dy = _f32(dy)  # held here: a pointer to a temporary would dangle
        _library().vepcli_scan_bwd(
            _ptr(u), _ptr(delta), _ptr(A), _ptr(B), _ptr(C), _ptr(D), _ptr(z), _ptr(bias), _ptr(states),
            _ptr(dy), _ptr(du), _ptr(ddelta), _ptr(dA), _ptr(dB_part), _ptr(dC_part), _ptr(dD), _ptr(dz),
            _ptr(dbias), batch, L, dim, N, a_rs, p_rs, int(ctx.softplus), groups, _threads(batch * groups))
        grads = [du, ddelta, dA, dB_part.sum(1), dC_part.sum(1), dD.unsqueeze(1), dz, dbias.unsqueeze(1)]
        out = []
        for g, spec, need in zip(grads, ctx.shapes, ctx.needs_input_grad[:8], strict=True):
            if spec is None or not need:
                out.append(None)
                continue
            shape, dtype = spec
            if g.dim() > len(shape):  # a parameter shared by the batch: sum over the rows
                g = g.sum(0)
            out.append(g.reshape(shape).to(dtype))
        return (*out, None)


def selective_scan_cpu(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus: bool = True):
    """The fused selective scan on the CPU kernel; same contract as `vepcli.nn.kernels.selective_scan`."""
    tensors = (u, delta, A, B, C, D, z, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _SelectiveScanCPU.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    ins = [_f32(t) for t in tensors]
    return _forward(*ins, delta_softplus, keep_states=False)[0].to(u.dtype)
