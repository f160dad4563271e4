"""Reading what the jobs produced: ``jobdb results``, ``best``, ``plot``, ``report``."""

from __future__ import annotations
