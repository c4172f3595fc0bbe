"""The command line under ``spark-submit``: a scan (or a train) on the cluster spark-submit names.

    spark-submit --master yarn --deploy-mode client \\
        "$(python -c 'import detector.engines.spark_submit as m; print(m.__file__)')" \\
        scan /shared/logs/ --out /shared/out/ --model /shared/models/current --spill-dir /shared/spill/

The arguments are those of ``ami-detector`` (``scan`` or ``train`` and its options); ``--engine spark`` is
implied and the master is spark-submit's. The executors need ami-detector installed in the same
Python (see the README's Spark section).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from detector.cli import main


def arguments(argv: Sequence[str]) -> list[str]:
    """*argv* (``scan LOGS... [options]``) with ``--engine spark`` added after the command unless given."""
    args = list(argv)
    if args and "--engine" not in args:
        args[1:1] = ["--engine", "spark"]
    return args


if __name__ == "__main__":
    main(arguments(sys.argv[1:]), prog_name="ami-detector")
