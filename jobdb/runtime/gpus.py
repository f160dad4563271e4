"""Which GPUs this machine has: NVML, else ``nvidia-smi``, else none.

Detection is only a default; ``--gpus 0,1,3`` overrides it (and is how the
tests declare fake devices on a machine without any).
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any


def detect_gpus() -> list[str]:
    """Device indices as strings, in NVML order; empty when there is no GPU."""
    found = _from_nvml()
    if found is None:
        found = _from_nvidia_smi()
    return found or []


def _from_nvml() -> list[str] | None:
    try:
        import pynvml  # type: ignore[import-not-found]  # optional: nvidia-ml-py
    except ImportError:
        return None
    nvml: Any = pynvml
    try:
        nvml.nvmlInit()
    except Exception:  # NVMLError when the driver is missing
        return None
    try:
        return [str(i) for i in range(nvml.nvmlDeviceGetCount())]
    finally:
        nvml.nvmlShutdown()


def _from_nvidia_smi() -> list[str] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return [line.strip() for line in out.splitlines() if line.strip()]


def parse_gpu_list(text: str) -> list[str]:
    """``--gpus 0,1,3`` → ``['0', '1', '3']`` (``none`` or empty: no GPU)."""
    if text.strip().lower() in ("", "none"):
        return []
    return [part.strip() for part in text.split(",") if part.strip()]
