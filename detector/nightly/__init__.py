"""The nightly job: take new export files from an inbox, store their events, score what they touch.

``ami-detector nightly`` runs unattended (a systemd timer or cron) against a drop folder of exports.
Each run picks up the files that are new and complete, appends their normalized events to an event
store, scores the windows those events touch against the active model, writes a dated report, and
on its cadence retrains the model on the recent baseline. Its exit status says whether a human is
needed: 0 nothing at or above the alert severity, 1 findings need a human, 2 an error.

State directory
---------------
::

    STATE/
      state.json                 what has been committed (rewritten atomically: temp, fsync, rename)
      lock                       JSON {pid, host, start, token} while a run is active
      .lock.guard                held (flock) only while a run checks or clears the lock
      nightly.log                one line per run: time, run id, exit status, counts or the reason
      runs/<run_id>.json         the JSON summary of every run
      events/day=D/part-<batch>.parquet    the event store: Hive-style partitions by event day (UTC),
                                           readable as it is by polars, DuckDB or Spark
      rejects/day=D/part-<batch>.parquet   lines that could not be parsed, by the day they arrived
      findings/day=D/part-<seq>.parquet    the findings ledger, by report date (OUT/D is built from it)
      carried/<seq>/             what the next night carries over (see :mod:`detector.nightly.carried`)
      models/<model_id>/         the active and the previous model
      staging/<batch>/           a batch being parsed (events/ as an event spill of days, rejects,
                                 manifest.json once complete)
      tmp/                       temporary files; renamed into place when complete, else removed

Which files are new
-------------------
A file is identified by the sha256 of its bytes, never by its name or modification time: the same
bytes under a second name are processed once. A file is taken when it is *complete*, that is

1. its size and sha256 are unchanged since a previous run saw it, or
2. its modification time is at least ``settle`` old (default 5 minutes) and, for text, it ends with
   a line break;

otherwise it is *waiting* and its size and hash are recorded for the next run. Hidden files and
names ending in ``.tmp``, ``.part``, ``.partial``, ``.filepart``, ``.crdownload``, ``.download``
or ``.swp`` are never taken: a writer should write under such a name and rename when done. A file
that grows after it was processed (the same path, whose first bytes hash to the processed content)
is a *continuation*: only its lines after the last processed one are taken.

Exactly once
------------
A run works in batches. The batch id is a hash of its files' content hashes, so a rerun after a
crash produces the same names, and every write below either replaces a file by rename or is
idempotent:

1. *parse*: the batch's files are parsed into ``staging/<batch>/`` by the engine's parse stage, as
   a scan parses (:mod:`detector.spill` layout, a slice a day); ``manifest.json`` is written last
   (atomically) and marks the staging as complete.
2. *append*: ``events/day=D/part-<batch>.parquet`` per event day, and ``rejects/...``, each written
   under ``tmp/`` and renamed into place.
3. *commit*: ``state.json`` gains the batch, its files and a scoring job (atomic rewrite). This is
   the commit point: a batch is in the store if and only if ``state.json`` lists it.
4. *score*: the job's events are scored; the findings go to the ledger ``findings/day=D/part-<seq>``.
5. *report*: ``OUT/D/`` is rebuilt from the ledger in a temporary directory and renamed into place;
   ``OUT/latest`` is replaced by a new symlink (``os.replace``).
6. *done*: the job's carried state is written to ``carried/<seq>/``; ``state.json`` records the job as
   done and names that snapshot in the same rewrite.

On start, a run (holding the lock) removes temporary files, resumes a complete staging (steps 2-3)
or discards an incomplete one, and removes event parts of batches ``state.json`` does not list.
A pending job is then scored and reported again; the report date and the ledger sequence number
were fixed when the job was committed, so the rerun overwrites the same files with the same
content. A process killed at any point therefore leaves either a batch that is not committed (its
files are taken again, under the same batch id) or a committed batch whose job is finished by the
next run: no event is lost or stored twice. :data:`STAGES` names the points where tests inject
failures.

Scoring what the new events touch
---------------------------------
A window is scored when it contains at least one new event: for each entity (account or device)
and window of the new events, the window is rebuilt from *all* its events in the store, so a
window that straddles the previous run's boundary is scored whole (its finding keeps its id and
the later report carries the complete window). For dormancy the context also holds each entity's
last event before the window (searched ``history`` back, default 30 days), and the state a single
scan carries across its slices is carried across nights (open logon sessions, the signals' state,
each entity's last activity; :mod:`detector.nightly.carried`). A window's findings therefore depend
only on the store, the carried state and the model, not on how the events were split into runs.

Model
-----
``--model`` is the initial model only: it is copied to ``models/<id>/`` on the first run. Without
one, events are stored ("baseline building") until they span ``min_baseline`` (7 days), then a
model is trained on them; those events are the baseline and are not scored. Every
``retrain_every`` (7 days) a model is trained on the last ``baseline`` days (28) of the store minus
the events of windows the ledger flagged at high or critical, so that an attack cannot teach the
model that it is normal. ``state.json`` names the active and the previous model;
:func:`rollback_model` (``ami-detector nightly --rollback``) swaps them back.

Retention
---------
Event, reject and ledger partitions of days more than ``keep`` (90 days) before the anchor day are
removed, the anchor being the earlier of today and the newest event day: a backfill of old exports
is not deleted as it arrives, and an event stamped in the far future cannot wipe the store. Reports
under OUT are left alone.

The package, by job: :mod:`~detector.nightly.config` (settings), :mod:`~detector.nightly.lock` and
:mod:`~detector.nightly.state` (the lock, the state directory and the store), :mod:`~detector.nightly.inbox`
(which files are new), :mod:`~detector.nightly.ingest` (parse, append, commit),
:mod:`~detector.nightly.models` (train, retrain, promote, roll back), :mod:`~detector.nightly.scoring`,
:mod:`~detector.nightly.carried` and :mod:`~detector.nightly.report` (score what is new with what earlier
nights carry over, write the day's report), :mod:`~detector.nightly.retention`,
and :mod:`~detector.nightly.run`, the steps of a night in order.
"""

from __future__ import annotations

from detector.nightly.config import NightlyConfig
from detector.nightly.lock import LockedError
from detector.nightly.models import rollback_model
from detector.nightly.run import run_nightly
from detector.nightly.state import STAGES, NightlyError, store_events
from detector.nightly.summary import RunSummary, waiting_notes

__all__ = ["STAGES", "LockedError", "NightlyConfig", "NightlyError", "RunSummary", "rollback_model",
           "run_nightly", "store_events", "waiting_notes"]
