"""The backend: where and how a worker computes, resolved once and recorded with every trial.

A :class:`Backend` is a frozen value: the device, the dtype, the time loop
(:mod:`rnnsweep.kernels.loops`), where its products run, whether steps are compiled
and whether training steps replay as CUDA graphs. A command or worker resolves it
once, from its flags and the environment (:func:`resolve_backend`), and passes it
down; nothing below re-reads an environment variable. Every trial row, the Parquet
export and the report footer name it, with the torch version, so a result always
says which code produced it (the loops agree to float tolerance, not bit for bit:
the CPU tanh is ``2 sigmoid(2a) - 1`` in the torch-op loop and a polynomial in C).

The user-facing overrides, validated once (a bad value is one line, exit 2):

- ``--loop`` / ``[train] loop`` / ``RNNSWEEP_LOOP``: ``auto`` (default), or a loop name;
- ``RNNSWEEP_GRAPHS=1``: training steps on fixed buffers, a replayed CUDA graph on CUDA;
- the older switches, still honoured where no loop is named: ``RNNSWEEP_NATIVE=0``
  (the ``torch`` loop), ``RNNSWEEP_NATIVE=blas`` (``blas``), ``RNNSWEEP_COMPILE=1``
  (``compiled``).

``auto`` picks, on the CPU, ``native`` where the C loops build (else ``torch``); on CUDA,
``triton`` where it is registered and Triton imports (else ``torch``).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from rnnsweep.errors import SpecError
from rnnsweep.kernels.loops import LOOPS, TimeLoop, get_loop
from rnnsweep.switches import switch

__all__ = [
    "Backend",
    "auto_loop",
    "check_device",
    "check_loop",
    "default_loop",
    "env_loop",
    "loop_choices",
    "resolve_backend",
    "resolve_device",
]

LOOP_ENV = "RNNSWEEP_LOOP"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def loop_choices() -> tuple[str, ...]:
    """``auto`` and every registered loop."""
    return ("auto", *LOOPS)


@dataclass(frozen=True)
class Backend:
    """Where and how trials are computed; stored with each of them (never part of a spec's
    hash: the loop is how, not what)."""

    device: str  # cpu | cuda | cuda:N (resolved: never auto)
    dtype: str  # float32 | float64
    loop: str  # the registered time loop that runs (see rnnsweep.kernels.loops)
    products: str  # own-avx512 | blas | cublas: where the loop's matrix products run
    compiled: bool  # each step of the torch-op loop one torch.compile graph
    graphs: bool  # training steps on fixed buffers (replayed as a CUDA graph on CUDA)
    torch_version: str = torch.__version__

    @property
    def time_loop(self) -> TimeLoop:
        return get_loop(self.loop)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def record(self) -> dict[str, object]:
        """The trial-row columns that name this backend."""
        return asdict(self)

    def describe(self) -> str:
        """One line for humans, e.g. ``native loop (own-avx512 products), float32 on cpu``."""
        extras = [name for name, on in (("compiled", self.compiled), ("graphs", self.graphs)) if on]
        more = f", {' + '.join(extras)}" if extras else ""
        return (
            f"{self.loop} loop ({self.products} products{more}), {self.dtype} on {self.device}, "
            f"torch {self.torch_version}"
        )


def check_device(device: str, *, auto: bool = True) -> str:
    """The one device validator: ``cpu``, ``cuda``, ``cuda:N`` (and ``auto`` if allowed),
    lower-cased; SpecError otherwise. Says nothing about whether that device exists."""
    d = str(device).strip().lower()
    if (auto and d == "auto") or d in ("cpu", "cuda"):
        return d
    if d.startswith("cuda:") and d[5:].isdigit():
        return d
    choices = "auto, cpu, cuda or cuda:N" if auto else "cpu, cuda or cuda:N"
    raise SpecError(f"device must be {choices}, got {device!r}")


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when visible, else cpu; a cuda device that is not there is an error."""
    d = check_device(device)
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError(f"--device {device} requested but no CUDA device is visible")
        index = int(d[5:]) if ":" in d else 0
        if index >= torch.cuda.device_count():
            raise SpecError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
    return d


def env_loop() -> str:
    """The loop the environment asks for: RNNSWEEP_LOOP, else the older switches, else auto."""
    named = os.environ.get(LOOP_ENV, "").strip().lower()
    if named:
        return check_loop(named, LOOP_ENV)
    if switch("RNNSWEEP_COMPILE") == "1":
        return "compiled"
    native = switch("RNNSWEEP_NATIVE")
    return {"0": "torch", "blas": "blas"}.get(native, "auto")


def check_loop(name: str, where: str = "--loop") -> str:
    """A loop name from a flag, file or environment; SpecError (one line) for an unknown one."""
    value = str(name).strip().lower()
    if value not in loop_choices():
        raise SpecError(f"{where} must be one of {', '.join(loop_choices())}, got {name!r}")
    return value


def auto_loop(device: torch.device | str, dtype: torch.dtype) -> TimeLoop:
    """What ``auto`` runs on ``device`` in ``dtype``: the first loop of the device's
    preference order that can run there."""
    dev = torch.device(device)
    order = ("triton", "torch") if dev.type == "cuda" else ("native", "torch")
    for name in order:
        loop = LOOPS.get(name)
        if loop is not None and loop.unavailable(dev, dtype) is None:
            return loop
    return LOOPS["torch"]


def default_loop(device: torch.device | str, dtype: torch.dtype) -> TimeLoop:
    """The loop for a library call that names none: the environment's (``RNNSWEEP_LOOP`` or
    the older switches), else ``auto``'s. Commands resolve a :class:`Backend` once instead."""
    name = env_loop()
    return auto_loop(device, dtype) if name == "auto" else get_loop(name)


def resolve_backend(device: str, dtype: str = "float32", loop: str | None = None) -> Backend:
    """The backend of a command or worker: ``device`` (auto allowed), the training ``dtype``,
    and ``loop`` from a flag or study file (None: the environment's, else auto).

    SpecError for a loop that cannot run on that device and dtype (with the reason).
    """
    dev = resolve_device(device)
    name = check_loop(loop) if loop else env_loop()
    tdtype = DTYPES[dtype]
    if name == "auto":
        chosen = auto_loop(dev, tdtype)
    else:
        chosen = get_loop(name)
        why = chosen.unavailable(torch.device(dev), tdtype)
        if why:
            raise SpecError(f"--loop {name} cannot run here: {why}")
    graphs = switch("RNNSWEEP_GRAPHS") == "1"
    return Backend(
        device=dev,
        dtype=dtype,
        loop=chosen.name,
        products=chosen.products(torch.device(dev)),
        compiled=chosen.compiled,
        graphs=graphs,
    )
