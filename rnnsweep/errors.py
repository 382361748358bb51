"""Every exception rnnsweep raises on purpose.

Library code raises these with the offending value in the message; only the CLI
entry point turns them into a one-line ``Error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import difflib

__all__ = [
    "RnnsweepError",
    "SpecError",
    "StorageError",
    "StudyNotFoundError",
    "SpecMismatchError",
    "SwitchError",
    "LaunchError",
    "closest",
]


class RnnsweepError(Exception):
    """Root of every error rnnsweep raises deliberately."""


class SpecError(RnnsweepError):
    """A study specification (flags or TOML file) is invalid."""


class StorageError(RnnsweepError):
    """A storage URL is unsupported, unreachable, unwritable or not an rnnsweep database."""


class StudyNotFoundError(RnnsweepError):
    """The named study does not exist in the storage."""


class SpecMismatchError(RnnsweepError):
    """A study is resumed or joined with a spec that differs from the stored one."""


class SwitchError(RnnsweepError):
    """An ``RNNSWEEP_*`` implementation switch in the environment holds a value it does not take."""


class LaunchError(RnnsweepError):
    """Workers cannot be launched: a launcher's settings, storage or scheduler are unusable."""


def closest(word: str, choices: list[str] | tuple[str, ...], cutoff: float = 0.6) -> str | None:
    """The choice closest to ``word`` (difflib), for "did you mean" hints; None if none is
    close. The one helper behind every such hint (spec keys, tasks, options)."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return close[0] if close else None
