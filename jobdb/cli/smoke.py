"""``jobdb smoke``: run the first job of every phase inline before dispatching."""

from __future__ import annotations
