"""rnnsweep: why some recurrent networks train and others don't.

Measures the fraction of feasible hyperparameter settings per cell architecture
and stacking depth (Collins, Sohl-Dickstein & Sussillo, ICLR 2017).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
