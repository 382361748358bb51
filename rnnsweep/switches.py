"""The ``RNNSWEEP_*`` environment switches that pick an implementation, read in one place.

None changes what is computed, only how (the tests hold every choice to the same
reference); a value a switch does not take is an error, not a silent default.

- ``RNNSWEEP_NATIVE``: ``1`` (default) the native CPU time loops, ``blas`` the same
  loops with every product through torch's BLAS, ``0`` torch ops
  (:mod:`rnnsweep.kernels._native`);
- ``RNNSWEEP_COMPILE``: ``1`` each step of the torch-op loop as one ``torch.compile``
  graph, ``0`` (default) eager (:mod:`rnnsweep.kernels._compiled`);
- ``RNNSWEEP_GRAPHS``: ``1`` training steps on fixed buffers, replayed as a CUDA graph on
  CUDA, ``0`` (default) eager steps (:mod:`rnnsweep.train._graphs`).
"""

from __future__ import annotations

import os

from rnnsweep.errors import SwitchError

__all__ = ["SWITCHES", "check_switches", "switch"]

# name -> (default, the values it takes)
SWITCHES: dict[str, tuple[str, tuple[str, ...]]] = {
    "RNNSWEEP_NATIVE": ("1", ("1", "blas", "0")),
    "RNNSWEEP_COMPILE": ("0", ("0", "1")),
    "RNNSWEEP_GRAPHS": ("0", ("0", "1")),
}


def switch(name: str) -> str:
    """Switch ``name``'s value (its default when unset); SwitchError for one it does not take."""
    default, allowed = SWITCHES[name]
    value = os.environ.get(name, default).strip().lower() or default
    if value not in allowed:
        raise SwitchError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def check_switches() -> None:
    """Read every switch once, so a bad value stops a command before it starts work."""
    for name in SWITCHES:
        switch(name)
