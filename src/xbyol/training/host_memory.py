"""Keep freed host memory inside the process, so a CPU training step stops page-faulting.

Every training step allocates its augmented views, activations and gradients anew and
frees them at its end. With its defaults, glibc's ``malloc`` serves blocks above its mmap
threshold (128 KiB, raised at run time to at most 32 MiB) with fresh ``mmap`` pages that
it unmaps on ``free``, and trims the free top of its heap back to the kernel. The next step
then touches pages the kernel has to zero and map again, one fault per 4 KiB page
(measured: benchmarks/BENCHMARKS.md, section "Freed host memory kept vs glibc's defaults").

:func:`retain_freed_memory` switches both hand-backs off with ``mallopt``: no block is
served from ``mmap`` (``M_MMAP_MAX = 0``) and the heap is trimmed only above 1 GiB of free
top (``M_TRIM_THRESHOLD``). The cost is that the process keeps its peak memory until it
exits, as GPU caching allocators do. Only glibc has ``mallopt``; elsewhere (macOS, musl)
nothing changes and the function says so.
"""

from __future__ import annotations

import ctypes
import platform
import sys
from typing import Any

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30

_retained = False


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory in the process (see the module docstring); idempotent.

    Returns:
        ``True`` when the allocator now keeps freed memory, ``False`` where it cannot
        (not Linux with glibc, or ``mallopt`` refused a setting).
    """
    global _retained
    if _retained:
        return True
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    _retained = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _retained


def apply_run_setting(device: Any, wanted: bool) -> bool:
    """A run's ``train.retain_freed_memory`` on its ``device`` (a ``torch.device``): kept only for CPU runs
    that ask for it, as other devices' tensors are not served by ``malloc``. Returns whether memory is kept."""
    return device.type == "cpu" and wanted and retain_freed_memory()
