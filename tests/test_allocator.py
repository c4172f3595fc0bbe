"""The command's allocator settings: in the environment before polars loads, the user's own kept, and
nothing set for a program or notebook that imports the library."""

from __future__ import annotations

import os
import subprocess
import sys

from detector.allocator import JEMALLOC_CONF, jemalloc_settings

# Prints the variable as polars' import found it, then as it is after the import.
_WATCH = """
import os, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "polars" and not seen:
            seen.append(os.environ.get("_RJEM_MALLOC_CONF"))
        return None
sys.meta_path.insert(0, Watch())
import {module}
print(seen[0])
print(os.environ.get("_RJEM_MALLOC_CONF"))
"""


def _run(module: str, conf: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != JEMALLOC_CONF}
    if conf is not None:
        env[JEMALLOC_CONF] = conf
    done = subprocess.run([sys.executable, "-c", _WATCH.format(module=module)], env=env, capture_output=True,
                          text=True, check=True)
    return done.stdout.splitlines()


def test_the_command_sets_the_allocator_before_polars_loads() -> None:
    at_import, after = _run("detector.cli", None)
    assert at_import == jemalloc_settings() == f"dirty_decay_ms:5000,muzzy_decay_ms:5000,narenas:{os.cpu_count()}"
    # polars puts its own defaults first; jemalloc takes the last value of each setting.
    assert after.endswith("," + jemalloc_settings())


def test_a_users_allocator_settings_win() -> None:
    at_import, _ = _run("detector.cli", "narenas:4")
    assert at_import == "narenas:4"


def test_the_library_leaves_the_allocator_alone() -> None:
    at_import, after = _run("detector.api", None)
    assert at_import == "None"
    assert "dirty_decay_ms:5000" not in after
