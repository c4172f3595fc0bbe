"""The memory allocator settings of the ``ami-detector`` command's process.

polars brings its own jemalloc, configured to hand freed pages back to the system after half a
second (``dirty_decay_ms:500,muzzy_decay_ms:1000``), in four arenas per core. A scan frees and
allocates chunk- and slice-sized temporaries (tens of MiB) many times a second, so the kernel kept
faulting in and zeroing the same memory: about a fifth of a scan's CPU time was the kernel's (page
faults, clearing pages, TLB shootdowns between the cores). Keeping freed pages for five seconds takes
about 2 of 24 CPU seconds off a scan of the sparse benchmark week on two cores, and 16 of 116 off
training; in one arena per core, fewer partly used arenas keep the scan's peak where it was (without,
100-230 MiB more), training's grows by about 300 MiB to 1.8 GiB.

jemalloc reads the settings once, when polars is loaded, so :mod:`detector.cli` sets them before it
imports polars, and only when the user has set none (``_RJEM_MALLOC_CONF``). Importing this module
loads no allocator. A notebook that imports :mod:`detector` keeps polars' own settings; to have these,
set the variable before starting Python.
"""

from __future__ import annotations

import os

JEMALLOC_CONF = "_RJEM_MALLOC_CONF"


def jemalloc_settings() -> str:
    """The command's settings: freed memory kept five seconds, one arena per core."""
    return f"dirty_decay_ms:5000,muzzy_decay_ms:5000,narenas:{os.cpu_count() or 1}"
