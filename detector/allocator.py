"""The memory allocator settings of the ``ami-detector`` command's process.

polars brings its own jemalloc, configured to hand freed pages back to the system after half a
second (``dirty_decay_ms:500,muzzy_decay_ms:1000``) in eight arenas on any machine. A scan frees and
allocates chunk- and slice-sized temporaries (tens of MiB) many times a second, so the kernel kept
faulting in and zeroing the same memory: about a fifth of a scan's CPU time was the kernel's (page
faults, clearing pages, TLB shootdowns between the two cores). Keeping freed pages for five seconds,
in two arenas, takes about 2 of 24 CPU seconds off a scan of the sparse benchmark week at the same
peak memory (benchmarks/README.md, eighth round).

jemalloc reads the settings once, when polars is loaded, so :mod:`detector.cli` sets them before it
imports polars, and only when the user has set none (``_RJEM_MALLOC_CONF``). This module imports
nothing: importing it loads no allocator. A notebook that imports :mod:`detector` keeps polars' own
settings; to have these, set the variable before starting Python.
"""

from __future__ import annotations

JEMALLOC_CONF = "_RJEM_MALLOC_CONF"
JEMALLOC_SETTINGS = "dirty_decay_ms:5000,muzzy_decay_ms:5000,narenas:2"
