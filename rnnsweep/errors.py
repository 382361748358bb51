"""Every exception rnnsweep raises on purpose.

Library code raises these with the offending value in the message; only the CLI
entry point turns them into a one-line ``Error: ...`` on stderr and an exit code:
2 for everything found before any work (bad input, unusable storage), and
:data:`EXIT_ENVIRONMENT` for an environmental failure during the work (full disk,
lost database), after which the store is consistent and a re-run finishes.
"""

from __future__ import annotations

import difflib

__all__ = [
    "EXIT_ENVIRONMENT",
    "EnvironmentFailure",
    "ForeignStudyError",
    "RnnsweepError",
    "SpecError",
    "StorageError",
    "StudyNotFoundError",
    "SpecMismatchError",
    "SwitchError",
    "LaunchError",
    "closest",
]


# BSD sysexits' EX_TEMPFAIL: "a temporary failure; the user is invited to retry".
EXIT_ENVIRONMENT = 75


class RnnsweepError(Exception):
    """Root of every error rnnsweep raises deliberately."""

    exit_code = 2


class SpecError(RnnsweepError):
    """A study specification (flags or TOML file) is invalid."""


class StorageError(RnnsweepError):
    """A storage URL is unsupported, unreachable, unwritable or not an rnnsweep database."""


class ForeignStudyError(StorageError):
    """An Optuna study rnnsweep would write to belongs to someone else (another tool, or
    another rnnsweep study), or the Optuna schema is not the installed Optuna's."""


class EnvironmentFailure(RnnsweepError):
    """The machine failed under a running command (disk full, I/O error, database gone).

    Every committed result is kept; running the same command again finishes the study.
    """

    exit_code = EXIT_ENVIRONMENT


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
