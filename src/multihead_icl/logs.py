"""Logging for pipeline jobs: one timestamped log file per job, warnings and the traceback of a
crash included."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_job_logging(log_path: str | Path | None, level: int = logging.INFO) -> None:
    """Send the package's log records (and Python warnings) to ``log_path``, or stderr when None."""
    handlers: list[logging.Handler]
    if log_path is None:
        handlers = [logging.StreamHandler(sys.stderr)]
    else:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_path, mode="w")]
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    if log_path is not None:  # (with stderr as the log, Python's own hook already prints it)
        sys.excepthook = _log_uncaught


def _log_uncaught(kind: type[BaseException], error: BaseException, traceback) -> None:
    """An exception no one caught ends the job: write it, with its traceback, to the job's log
    (where Snakemake points the user), then to stderr as Python would."""
    if not issubclass(kind, KeyboardInterrupt):
        logging.getLogger("multihead_icl").critical(
            "the job failed: %s: %s", kind.__name__, error, exc_info=(kind, error, traceback)
        )
    sys.__excepthook__(kind, error, traceback)
