"""Moving data between databases and files: ``jobdb db copy``, ``export``, ``import``."""

from __future__ import annotations
