"""Our compiled CPU kernels (`cpu_scan.cpp`: selective scan, conv + SiLU), built on first use with g++.

Why a plain shared library through ctypes: it needs nothing but g++ or clang++ (no torch headers, no
pybind, no ninja), builds in about two seconds, and ctypes releases the GIL while it runs. The library is compiled for
the machine it runs on (`-march=native`) and cached under a name that includes the source, the
compiler and the CPU's features, so a home directory shared by different cluster nodes never loads
a build made for another CPU. Where no compiler or no cache directory is usable, `available()` is
False, one warning says why, and the dispatch falls back to the pure-PyTorch scan.

Cache: `$VEPCLI_CACHE_DIR`, else `$XDG_CACHE_HOME/vepcli`, else `~/.cache/vepcli`. `$VEPCLI_CPU_ARCH` sets
`-march` (default native).
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
from pathlib import Path

import torch

from vepcli.atomic import atomic_file
from vepcli.nn.kernels.common import needs_grad

SOURCE = Path(__file__).with_name("cpu_scan.cpp")
CFLAGS = ["-O3", "-fPIC", "-shared", "-pthread", "-fno-exceptions", "-fno-rtti"]


def march() -> str:
    """The target CPU: `$VEPCLI_CPU_ARCH` (e.g. x86-64-v3 for every AVX2 node of a cluster), else native."""
    return os.environ.get("VEPCLI_CPU_ARCH", "").strip() or "native"


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
    key = hashlib.sha256(
        "\0".join(
            [SOURCE.read_text(), " ".join(CFLAGS), march(), version, _cpu_identity(), platform.machine()]
        ).encode()
    ).hexdigest()[:16]
    target = cache_dir() / f"cpu_scan-{key}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target) as tmp:  # processes building at once each rename a complete file
        compile_source(SOURCE, tmp, cc)
    return target


def compile_source(source: Path, target: Path, cc: str | None = None) -> None:
    """Compile a version of cpu_scan.cpp into the shared library `target`, with the package's flags."""
    cc = cc or _compiler()
    if cc is None:
        raise OSError("no C++ compiler found: install g++ (Debian/Ubuntu: apt-get install g++) or set CXX")
    cmd = [cc, *CFLAGS, f"-march={march()}", str(source), "-o", str(target)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise OSError(f"{Path(cc).name} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")


class ScanArgs(ctypes.Structure):
    """The C struct of the same name: the same fields in the same order."""

    _fields_ = [
        (n, ctypes.c_void_p)
        for n in (
            "u",
            "delta",
            "A",
            "B",
            "C",
            "D",
            "z",
            "bias",
            "y",
            "states",
            "dout",
            "du",
            "ddelta",
            "dA",
            "dB_part",
            "dC_part",
            "dD",
            "dz",
            "dbias",
            "reverse",
        )
    ] + [
        (n, ctypes.c_int64)
        for n in (
            "batch",
            "L",
            "dim",
            "N",
            "groups",
            "a_gs",
            "p_gs",
            "B_rs",
            "B_ts",
            "C_rs",
            "C_ts",
            "z_rs",
            "z_ts",
            "z_rows",
            "softplus",
            "part_groups",
        )
    ]


class ConvArgs(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_void_p) for n in ("x", "w", "bias", "out", "dout", "dx", "dw_part", "dbias_part", "reverse")
    ] + [(n, ctypes.c_int64) for n in ("batch", "L", "dim", "K", "groups", "x_rs", "x_ts")]


@functools.cache
def _library() -> ctypes.CDLL | None:
    if os.environ.get("VEPCLI_NO_CPU_KERNEL"):
        return None
    try:
        return load_library(_build())
    except (OSError, subprocess.SubprocessError) as err:
        print(
            f"vepcli: warning: CPU scan kernel unavailable ({err}); using the slower pure-PyTorch scan", file=sys.stderr
        )
        return None


def load_library(path: Path) -> ctypes.CDLL:
    """A compiled cpu_scan.cpp, its entry points typed."""
    lib = ctypes.CDLL(str(path))
    for name, args in (
        ("vepcli_scan_fwd", ScanArgs),
        ("vepcli_scan_bwd", ScanArgs),
        ("vepcli_conv_fwd", ConvArgs),
        ("vepcli_conv_bwd", ConvArgs),
    ):
        getattr(lib, name).argtypes = [ctypes.POINTER(args), ctypes.c_int]
        getattr(lib, name).restype = None
    return lib


def available() -> bool:
    """True when the kernels are compiled (or cached) and loaded."""
    return _library() is not None


def _f32(t: torch.Tensor | None, inner_contiguous: bool = False) -> torch.Tensor | None:
    """fp32 and contiguous, or (`inner_contiguous`) only its last dimension contiguous: views of a wider
    projection (B and C of x_proj, z of in_proj) go to the kernel as they are, with their strides."""
    if t is None:
        return None
    t = t.detach().to(torch.float32)
    if inner_contiguous and t.stride(-1) == 1 and t.dim() == 3:
        return t
    return t.contiguous()


def _ptr(t: torch.Tensor | None) -> int | None:
    """The address of an fp32 tensor that the caller keeps alive during the call."""
    return None if t is None else t.data_ptr()


def _threads(items: int) -> int:
    return max(1, min(torch.get_num_threads(), items))


def _reverse_flags(reverse, groups: int) -> torch.Tensor | None:
    if reverse is None or not any(reverse):
        return None
    assert len(reverse) == groups, "one reverse flag per parameter group"
    return torch.tensor([bool(r) for r in reverse], dtype=torch.int8)


def groups(A: torch.Tensor, D: torch.Tensor | None, bias: torch.Tensor | None) -> int:
    """How many parameter groups the batch forms: 1 when A, D and the bias are shared by every row."""
    return max([1] + [t.shape[0] for t in (A, D, bias) if t is not None and t.dim() == (3 if t is A else 2)])


def _per_group(t: torch.Tensor | None, G: int, grouped_dim: int) -> torch.Tensor | None:
    """A parameter given once for all rows, repeated for each of G groups (when another one is grouped)."""
    if t is None or G == 1 or t.dim() == grouped_dim:
        return t
    return t.expand(G, *t.shape).contiguous()


def _scan_args(u, delta, A, B, C, D, z, bias, reverse, softplus: bool) -> ScanArgs:
    """The kernel's arguments; D and bias are both (dim,) or both (G, dim) here."""
    batch, L, dim = u.shape
    N, G = A.shape[-1], groups(A, D, bias)
    if batch % G:
        raise ValueError(f"a batch of {batch} rows does not split into {G} parameter groups")
    args = ScanArgs(
        u=_ptr(u),
        delta=_ptr(delta),
        A=_ptr(A),
        B=_ptr(B),
        C=_ptr(C),
        D=_ptr(D),
        z=_ptr(z),
        bias=_ptr(bias),
        reverse=_ptr(reverse),
        batch=batch,
        L=L,
        dim=dim,
        N=N,
        groups=G,
        a_gs=dim * N if A.dim() == 3 else 0,
        softplus=int(softplus),
    )
    args.p_gs = dim if any(t is not None and t.dim() == 2 for t in (D, bias)) else 0
    args.B_rs, args.B_ts = B.stride(0), B.stride(1)
    args.C_rs, args.C_ts = C.stride(0), C.stride(1)
    if z is not None:
        args.z_rs, args.z_ts, args.z_rows = z.stride(0), z.stride(1), z.shape[0]
    return args


def _specs(*tensors: torch.Tensor | None) -> tuple:
    """(shape, dtype) of each input, or None: all that backward needs of the inputs as they were given."""
    return tuple(None if t is None else (t.shape, t.dtype) for t in tensors)


def _grad_as(g: torch.Tensor | None, like: tuple | None, need: bool) -> torch.Tensor | None:
    """A gradient in the shape and dtype of its input. Gradients computed per row (batch, ...) of a
    parameter shared by all rows, or by each group of rows, are summed over those rows."""
    if g is None or like is None or not need:
        return None
    shape, dtype = like
    if g.shape[0] != shape[0] or g.dim() != len(shape):
        g = g.sum(0) if g.dim() > len(shape) else g.reshape(shape[0], -1, *g.shape[1:]).sum(1)
    return g.to(dtype)


def _inputs(u, delta, A, B, C, D, z, bias, reverse, softplus: bool):
    """fp32 copies as the kernel reads them (views with a contiguous last dimension stay views)."""
    G = groups(A, D, bias)
    u, delta, A = _f32(u), _f32(delta), _f32(A)
    D, bias = (
        _f32(_per_group(t, G if any(p is not None and p.dim() == 2 for p in (D, bias)) else 1, 2)) for t in (D, bias)
    )
    B, C, z = (_f32(t, inner_contiguous=True) for t in (B, C, z))
    rev = _reverse_flags(reverse, G)
    return (u, delta, A, B, C, D, z, bias), rev, _scan_args(u, delta, A, B, C, D, z, bias, rev, softplus)


def _scan_forward(u, delta, A, B, C, D, z, bias, softplus, reverse, keep_states: bool):
    """The kernel's forward: y in u's dtype, the fp32 inputs it read, the reverse flags, and (when training)
    the states every `chunk()` steps that the backward pass starts from."""
    ins, rev, args = _inputs(u, delta, A, B, C, D, z, bias, reverse, softplus)
    y = torch.empty_like(ins[0])
    states = y.new_empty(u.shape[0], -(-u.shape[1] // chunk()), A.shape[-1], u.shape[2]) if keep_states else None
    args.y, args.states = _ptr(y), _ptr(states)
    _library().vepcli_scan_fwd(args, _threads(u.shape[0] * u.shape[2]))
    return y.to(u.dtype), ins, rev, states


class _SelectiveScanCPU(torch.autograd.Function):
    """The fused scan with the kernel's own backward (states kept every chunk, steps recomputed)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, bias, softplus, reverse):
        y, ins, rev, states = _scan_forward(u, delta, A, B, C, D, z, bias, softplus, reverse, keep_states=True)
        ctx.save_for_backward(*ins, states)
        ctx.softplus, ctx.rev, ctx.specs = softplus, rev, _specs(u, delta, A, B, C, D, z, bias)
        return y

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, D, z, bias, states = ctx.saved_tensors
        batch, L, dim = u.shape
        N = A.shape[-1]
        # dB and dC are summed over channels: per part of 8 channel blocks, then over parts here. Parts follow
        # from the sizes alone, so gradients do not depend on the number of threads.
        lib = _library()
        parts = -(-dim // (lib.vepcli_block() * lib.vepcli_blocks_per_part()))
        dy = _f32(dy)  # held here: a pointer to a temporary would dangle
        du, ddelta = torch.empty_like(u), torch.empty_like(u)
        dz = torch.empty_like(u) if z is not None else None
        dA, dD, dbias = u.new_empty(batch, dim, N), u.new_empty(batch, dim), u.new_empty(batch, dim)
        dB_part, dC_part = (u.new_empty(batch, parts, L, N) for _ in range(2))
        args = _scan_args(u, delta, A, B, C, D, z, bias, ctx.rev, ctx.softplus)
        for name, t in (
            ("states", states),
            ("dout", dy),
            ("du", du),
            ("ddelta", ddelta),
            ("dA", dA),
            ("dB_part", dB_part),
            ("dC_part", dC_part),
            ("dD", dD),
            ("dz", dz),
            ("dbias", dbias),
        ):
            setattr(args, name, _ptr(t))
        args.part_groups = parts
        lib.vepcli_scan_bwd(args, _threads(batch * parts))
        z_spec = ctx.specs[6]
        if z_spec is not None and z_spec[0][0] != batch:  # rows that share one z (row b reads z[b % rows]) add up
            dz = dz.reshape(-1, z_spec[0][0], L, dim).sum(0)
        grads = (du, ddelta, dA, dB_part.sum(1), dC_part.sum(1), dD, dz, dbias)
        return (
            *(_grad_as(g, t, need) for g, t, need in zip(grads, ctx.specs, ctx.needs_input_grad, strict=False)),
            None,
            None,
        )


def selective_scan_cpu(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus: bool = True, reverse=None):
    """The fused selective scan on the CPU kernel; the contract of `vepcli.nn.kernels.selective_scan`."""
    if needs_grad(u, delta, A, B, C, D, z, delta_bias):
        return _SelectiveScanCPU.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse)
    return _scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse, keep_states=False)[0]


def chunk() -> int:
    """Steps between the states saved for the backward pass."""
    return _library().vepcli_scan_chunk()


def _conv_args(x, weight, bias, reverse) -> ConvArgs:
    batch, L, dim = x.shape
    return ConvArgs(
        x=_ptr(x),
        w=_ptr(weight),
        bias=_ptr(bias),
        reverse=_ptr(reverse),
        batch=batch,
        L=L,
        dim=dim,
        K=weight.shape[-1],
        groups=weight.shape[0],
        x_rs=x.stride(0),
        x_ts=x.stride(1),
    )


def _conv_forward(x, weight, bias, reverse):
    """The conv kernel's forward: output in x's dtype, the fp32 inputs it read, and the reverse flags."""
    x32, w32, b32 = _f32(x, inner_contiguous=True), _f32(weight), _f32(bias)
    rev = _reverse_flags(reverse, weight.shape[0])
    out = x32.new_empty(weight.shape[0] * x.shape[0], *x.shape[1:])
    args = _conv_args(x32, w32, b32, rev)
    args.out = _ptr(out)
    _library().vepcli_conv_fwd(args, _threads(x.shape[0] * x.shape[2]))
    return out.to(x.dtype), (x32, w32, b32), rev


class _ConvSiLUCPU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, reverse):
        out, ins, rev = _conv_forward(x, weight, bias, reverse)
        ctx.save_for_backward(*ins)
        ctx.rev, ctx.specs = rev, _specs(x, weight, bias)
        return out

    @staticmethod
    def backward(ctx, dout):
        x, w, b = ctx.saved_tensors
        x0, w0, b0 = ctx.specs
        batch, L, dim = x.shape
        G, K = w.shape[0], w.shape[-1]
        dout = _f32(dout)
        dx = x.new_empty(batch, L, dim)
        dw, db = x.new_empty(batch, G, dim, K), x.new_empty(batch, G, dim)
        args = _conv_args(x, w, b, ctx.rev)
        args.dout, args.dx, args.dw_part, args.dbias_part = _ptr(dout), _ptr(dx), _ptr(dw), _ptr(db)
        _library().vepcli_conv_bwd(args, _threads(batch * dim))
        need = ctx.needs_input_grad
        return _grad_as(dx, x0, need[0]), _grad_as(dw.sum(0), w0, need[1]), _grad_as(db.sum(0), b0, need[2]), None


def conv1d_silu_cpu(x, weight, bias=None, reverse=None):
    """SiLU(depthwise conv) for each group of weights: (batch, L, dim) -> (groups batch, L, dim).

    weight (groups, dim, K), bias (groups, dim); group g is causal, or anti-causal where reverse[g]."""
    if needs_grad(x, weight, bias):
        return _ConvSiLUCPU.apply(x, weight, bias, reverse)
    return _conv_forward(x, weight, bias, reverse)[0]
