"""Native CPU time loops: the per-step part of every fused kernel as one C call per layer.

Why. On a CPU, the torch-op time loop of :mod:`rnnsweep.kernels._base` spends about
as long in a dozen small pointwise passes per step (each a full trip through
torch's dispatcher and through memory) as in the step's product. The C loops in
``native/layers.c`` run, for each member of the pack and each step, the member's
small recurrent product ``h_{t-1} W^h`` and then *one* fused pass of the gate math
over the step's rows while they are still in cache. Members are spread over OpenMP
threads (torch's own runtime, so ``torch.set_num_threads`` governs both), and a
member's arithmetic never depends on the pack it is in.

Products. float32 products run through ``native/gemm.h``, a small AVX-512 GEMM
(where the CPU has AVX-512): torch's MKL runs its AVX2 code on AMD CPUs, at most
half of what the AVX-512 units do (docs/PERFORMANCE.md: 170-200 against 80-95
GFLOP/s per core at these shapes). Elsewhere, for float64, and with
the ``blas`` time loop, they go through the BLAS torch itself links (its exported
Fortran ``sgemm_``/``dgemm_``).

Besides the time loops, the forward forms each member's input projection
``x W^x`` (one GEMM over its ``T*B`` rows) right before that member's loop, so the
loop finds it in cache, and adds the input bias per step. The backward forms the
weight gradients ``dW^h``, ``dW^x`` and the input gradient ``dx`` inside its loop,
every 256 rows of steps, while those rows of ``F``, ``h`` and ``x`` are in cache:
as separate products over all ``T*B`` rows afterwards they read everything back
from memory and took as long as the rest of the backward. Buffers, their layouts and
what is saved for backward are the torch path's, so the two paths are
interchangeable step for step (``tests/test_kernels.py`` runs both against the
per-step reference).

Build. The source is compiled on first use with the system C compiler (``$CC``,
else ``cc``) into ``$RNNSWEEP_CACHE/native`` (default ``~/.cache/rnnsweep``),
under a name that hashes the source, the flags, the compiler and the CPU, so a
shared home directory never hands one machine another's ``-march=native`` build.
Concurrent workers each compile to a private file and rename it into place.

Fallback. Anything missing (no compiler, a torch without an exported BLAS, a
non-float dtype, a GPU tensor) makes :mod:`rnnsweep.backend` choose the ``torch`` loop
under ``--loop auto``; :func:`build_error` says why. Which loop runs is a
:class:`~rnnsweep.kernels.loops.TimeLoop` chosen once per command (``--loop``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "available",
    "bmm",
    "build_error",
    "built_with_own_gemm",
    "check_codes",
    "run",
    "supports",
]

_SRC_DIR = Path(__file__).with_name("native")
_SOURCES = ("layers.c", "layers_body.h", "gemm.h")
_FLAGS = (
    "-O3",
    "-fPIC",
    "-shared",
    "-fopenmp",
    # no errno and no FP traps: lets GCC vectorise floorf in the exp polynomial; NaN
    # and inf semantics stay IEEE (no -ffast-math), which divergence detection needs
    "-fno-math-errno",
    "-fno-trapping-math",
)
_FIELDS = (
    "A",
    "Hs",
    "Wh",
    "WhT",
    "Xin",
    "Wx",
    "bias",
    "F",
    "dH",
    "X",
    "Ys",
    "dY",
    "Cs",
    "N",
    "dN",
    "Z",
    "bhn",
    "carry",
    "scratch",
    "dWh",
    "dWx",
    "dX",
    "WxT",
    "gscratch",
    "db",
)
# Fields the C code writes; the others are read only (and may be copied to be dense).
_WRITTEN = frozenset(
    {"A", "Hs", "F", "dH", "Ys", "Cs", "N", "dN", "carry", "scratch"}
    | {"dWh", "dWx", "dX", "gscratch", "db"}
)


def _shape(
    field: str,
    K: int,
    T: int,
    B: int,
    H: int,
    W: int,
    I: int,  # noqa: E741
    f_steps: int,
    a_steps: int,
) -> tuple[int, ...]:
    """The shape native/layers.c assumes for ``field`` (``W``: the gate width G*H)."""
    return {
        "A": (K, a_steps, B, W),
        "F": (K, f_steps, B, W),
        "Hs": (K, T + 1, B, H),
        "Cs": (K, T + 1, B, H),
        "dH": (T + 1, K, B, H),
        "N": (T, K, B, H),
        "Wh": (K, H, W),
        "WhT": (K, W, H),
        "Wx": (K, I, W),
        "Xin": (K, T, B, I),
        "bias": (K, 1, W),
        "bhn": (K, 1, H),
        "carry": (K, B, H),
        "scratch": (K, B, H),
        "gscratch": (K, f_steps, B, H),
        "dWh": (K, H, W),
        "dWx": (K, I, W),
        "WxT": (K, W, I),
        "dX": (K, T, B, I),
        "db": (K, 1, W),
    }.get(field, (K, T, B, H))  # X, Ys, dY, Z, dN


class _Layer(ctypes.Structure):
    """Mirror of ``Layer`` in native/layers.c."""

    _fields_ = [
        ("K", ctypes.c_int64),
        ("T", ctypes.c_int64),
        ("B", ctypes.c_int64),
        ("H", ctypes.c_int64),
        ("I", ctypes.c_int64),
        ("xin_kstride", ctypes.c_int64),
        ("nthreads", ctypes.c_int64),
        ("relu", ctypes.c_int64),
        ("own_gemm", ctypes.c_int64),
        ("f_steps", ctypes.c_int64),
        ("gemm", ctypes.c_void_p),
        *((name, ctypes.c_void_p) for name in _FIELDS),
        ("relu_of", ctypes.c_void_p),  # (K,) int64 per-member codes, or NULL
        ("a_steps", ctypes.c_int64),
    ]


class _Unavailable(RuntimeError):
    """The native loops cannot be used here; the message says why."""


def _cache_dir() -> Path:
    root = os.environ.get("RNNSWEEP_CACHE")
    if root:
        return Path(root) / "native"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "rnnsweep" / "native"


def _cpu_fingerprint() -> str:
    """The CPU's feature flags (x86 ``flags``/ARM ``Features``): what -march=native used."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compile(cc: str, flags: list[str], out: Path) -> None:
    """Compile the sources into ``out`` through a private temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run(
            [cc, *flags, "-o", tmp, str(_SRC_DIR / "layers.c"), "-lm"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise _Unavailable(f"{cc} failed: {last}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_KEEP_BUILDS = 8


def _prune(new: Path) -> None:
    """Remove all but the newest ``_KEEP_BUILDS`` builds next to ``new`` (older source
    versions and flags pile up otherwise). A process still using a removed build keeps
    its mapping; one that wants it back compiles it again."""
    builds = sorted(new.parent.glob("layers-*.so"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [p for p in builds if p != new][_KEEP_BUILDS - 1 :]:
        old.unlink(missing_ok=True)


def _build() -> Path:
    """Path of the compiled library, building it if this machine has none cached."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise _Unavailable("no C compiler (set CC or install gcc)")
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise _Unavailable(f"C compiler {cc!r} does not run: {exc}") from None
    source = b"".join((_SRC_DIR / name).read_bytes() for name in _SOURCES)
    attempts = [[*_FLAGS, "-march=native"], list(_FLAGS)]
    errors = []
    for flags in attempts:
        key = hashlib.sha256(
            b"\0".join(
                [source, " ".join(flags).encode(), version.stdout.encode(), cc.encode()]
                + [_cpu_fingerprint().encode(), platform.machine().encode()]
            )
        ).hexdigest()[:16]
        out = _cache_dir() / f"layers-{key}.so"
        if out.exists():
            return out
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            _compile(cc, flags, out)
            _prune(out)
            return out
        except (_Unavailable, OSError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
    raise _Unavailable("; ".join(errors))


def _torch_gemm() -> dict[torch.dtype, int]:
    """Addresses of the Fortran ``sgemm_``/``dgemm_`` that torch's CPU library exports."""
    libdir = Path(torch.__file__).parent / "lib"
    for pattern in ("libtorch_cpu.so", "libtorch_cpu.*"):
        for path in sorted(libdir.glob(pattern)):
            lib = ctypes.CDLL(str(path))
            try:
                return {
                    torch.float32: ctypes.cast(lib.sgemm_, ctypes.c_void_p).value,
                    torch.float64: ctypes.cast(lib.dgemm_, ctypes.c_void_p).value,
                }
            except AttributeError:
                raise _Unavailable(f"{path.name} exports no sgemm_/dgemm_") from None
    raise _Unavailable(f"no libtorch_cpu in {libdir}")


@functools.cache
def _library() -> tuple[ctypes.CDLL, dict[torch.dtype, int]] | str:
    """The loaded library and the GEMM addresses, or the reason there are none."""
    try:
        gemm = _torch_gemm()  # first: torch's libgomp is then the one the library binds to
        lib = ctypes.CDLL(str(_build()))
    except (_Unavailable, OSError) as exc:
        return str(exc)
    for suffix in ("f32", "f64"):
        for name in ("rnn", "ugrnn", "grupre", "grupost", "lstm", "plusrnn", "minimalrnn"):
            for direction in ("fwd", "bwd"):
                fn = getattr(lib, f"{name}_{direction}_{suffix}")
                fn.argtypes, fn.restype = [ctypes.POINTER(_Layer)], None
    lib.has_own_gemm.argtypes, lib.has_own_gemm.restype = [], ctypes.c_int64
    lib.grad_pass_steps.argtypes, lib.grad_pass_steps.restype = [ctypes.c_int64], ctypes.c_int64
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.bmm_f32.argtypes = [i64, i64, i64, i64, ptr, i64, i64, i64, ptr, i64, i64, ptr, i64]
    lib.bmm_f32.restype = None
    return lib, gemm


def grad_pass_steps(B: int) -> int:
    """Steps per weight-gradient pass of the native backward at batch ``B``: what ``F``
    must hold per member when the loop forms every gradient that reads it."""
    lib = _library()
    assert not isinstance(lib, str), lib
    return int(lib[0].grad_pass_steps(B))


def available() -> bool:
    """Whether the native loops are built and loadable on this machine."""
    return not isinstance(_library(), str)


def build_error() -> str:
    """Why the native loops are unavailable ("" where they are available)."""
    lib = _library()
    return lib if isinstance(lib, str) else ""


@functools.cache
def built_with_own_gemm() -> bool:
    """Whether the library was built with native/gemm.h's AVX-512 kernel (the CPU has
    AVX-512): float32 products of the ``native`` loop then run through it."""
    lib = _library()
    return not isinstance(lib, str) and bool(lib[0].has_own_gemm())


def supports(x: Tensor) -> bool:
    """Whether the native loops can run a layer whose input is ``x`` (CPU, float32/64)."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and available()


def _codes(s: str | Tensor, name: str, K: int) -> tuple[int, Tensor | None]:
    """The Layer's ``relu`` flag and per-member codes for ``s``: a nonlinearity name for
    the pack, or ``(K,)`` integer codes (0 tanh, 1 relu), one per member."""
    if isinstance(s, str):
        if s not in ("tanh", "relu") and not name.startswith("plusrnn"):  # +RNN: fixed
            raise ValueError(f"unknown nonlinearity {s!r}; choose tanh or relu")
        return int(s == "relu"), None
    check_codes(s, K)
    return 0, s.to(device="cpu", dtype=torch.int64).contiguous()


def check_codes(s: Tensor, K: int) -> None:
    """ValueError unless ``s`` is ``(K,)`` per-member codes: integers, 0 (tanh) or 1 (relu)
    (the values are checked where they are on the CPU: reading a GPU's is a sync)."""
    if tuple(s.shape) != (K,) or s.dtype.is_floating_point or s.dtype.is_complex:
        raise ValueError(
            f"per-member codes must be a ({K},) integer tensor, got {s.dtype} {tuple(s.shape)}"
        )
    if s.device.type == "cpu" and bool(((s < 0) | (s > 1)).any()):
        raise ValueError(f"per-member codes must be 0 (tanh) or 1 (relu), got {s.tolist()}")


def run(
    name: str,
    s: str | Tensor,
    dims: tuple[int, int, int, int],
    tensors: dict[str, Tensor],
    *,
    own_gemm: bool,
) -> None:
    """Call the C loop ``name`` (e.g. ``"ugrnn_fwd"``) over ``tensors`` (fields of ``Layer``);
    float32 products through the own GEMM when ``own_gemm`` (and it is built), else BLAS.
    ``s``: the pack's nonlinearity, or ``(K,)`` per-member codes (0 tanh, 1 relu).

    ``dims`` is ``(K, T, B, H)``. Written fields must be dense; read-only ones are made
    dense here if they are not (a copy the C code reads). Every tensor must share the
    dtype of ``Hs``; the C code trusts the layouts documented in native/layers.c.
    """
    lib, gemm = _library()  # type: ignore[misc]  # callers checked supports()
    dtype = tensors["Hs"].dtype
    K, T, B, H = dims
    relu, codes = _codes(s, name, K)
    W = tensors["Wh"].shape[-1]
    I = tensors["Xin"].shape[-1] if "Xin" in tensors else 0  # noqa: E741
    assert I or not tensors.keys() & {"dWx", "dX"}, f"native {name}: dWx/dX need Xin"
    layer = _Layer(K=K, T=T, B=B, H=H, nthreads=torch.get_num_threads(), relu=relu)
    if codes is not None:
        layer.relu_of = codes.data_ptr()  # codes outlives the call: a local of this frame
    layer.own_gemm = int(dtype == torch.float32 and own_gemm and built_with_own_gemm())
    layer.f_steps = tensors["F"].shape[1] if "F" in tensors else T
    f_ok = layer.f_steps in (T, min(T, grad_pass_steps(B)))
    assert f_ok, f"native {name}: F holds {layer.f_steps} steps"
    layer.a_steps = tensors["A"].shape[1] if "A" in tensors else T
    a_ok = layer.a_steps == T or (layer.a_steps == grad_pass_steps(B) and "Wx" in tensors)
    assert a_ok, f"native {name}: A holds {layer.a_steps} steps"
    layer.gemm = gemm[dtype]
    keep = []  # read-only copies must outlive the call
    for field, t in tensors.items():
        assert t.dtype == dtype and t.device.type == "cpu", f"{field}: {t.dtype} on {t.device}"
        want = _shape(field, K, T, B, H, W, I, layer.f_steps, layer.a_steps)
        assert tuple(t.shape) == want, f"native {name}: {field} is {tuple(t.shape)}, not {want}"
        if field == "Xin":
            # read in place when dense within each member (e.g. the layer below's
            # h_0..h_{T-1}, a view that skips its h_{-1} rows); the member stride goes along
            if t.stride()[1:] != (B * I, I, 1):
                t = t.contiguous()
                keep.append(t)
            layer.I, layer.xin_kstride = I, t.stride(0)
        elif not t.is_contiguous():
            assert field not in _WRITTEN, f"native {name}: written buffer {field} is not dense"
            t = t.contiguous()
            keep.append(t)
        setattr(layer, field, t.data_ptr())
    suffix = "f32" if dtype == torch.float32 else "f64"
    getattr(lib, f"{name}_{suffix}")(ctypes.byref(layer))


def bmm(a: Tensor, b: Tensor, *, own: bool) -> Tensor:
    """``torch.bmm(a, b)``; with ``own``, through native/gemm.h's kernel for float32 on the
    CPU where it is built (the ``native`` time loop's products).

    ``a`` ``(n, M, K)`` may be any strided view (``x.transpose(1, 2)`` is read in place);
    ``b`` ``(n, K, N)`` is copied only if its rows are not unit-stride. Each product is
    a member's own: its result does not depend on the others in the batch.
    """
    if not (own and a.dtype == b.dtype == torch.float32 and a.device.type == "cpu"):
        return torch.bmm(a, b)
    if not built_with_own_gemm():
        return torch.bmm(a, b)
    n, M, K = a.shape
    assert b.shape[:2] == (n, K), f"bmm: {tuple(a.shape)} @ {tuple(b.shape)}"
    N = b.shape[2]
    if b.stride(2) != 1:
        b = b.contiguous()
    out = torch.empty(n, M, N, dtype=a.dtype)
    if out.numel() == 0:
        return out
    if K == 0:
        return out.zero_()
    lib, _ = _library()  # type: ignore[misc]  # built_with_own_gemm() checked it
    lib.bmm_f32(
        n, M, K, N,
        a.data_ptr(), a.stride(0), a.stride(1), a.stride(2),
        b.data_ptr(), b.stride(0), b.stride(1),
        out.data_ptr(), torch.get_num_threads(),
    )  # fmt: skip
    return out
