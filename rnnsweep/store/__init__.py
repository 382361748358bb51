"""Where results live: Optuna's RDB storage plus rnnsweep's tables, and exports."""

from __future__ import annotations

from rnnsweep.store.db import Store, diff_keys
from rnnsweep.store.url import DEFAULT_STORAGE, ENV_VAR, check_storage, mask_url, resolve_url

__all__ = [
    "DEFAULT_STORAGE",
    "ENV_VAR",
    "Store",
    "check_storage",
    "diff_keys",
    "mask_url",
    "resolve_url",
]
