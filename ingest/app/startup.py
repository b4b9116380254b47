"""Start-up errors as one line saying what to do; ``--debug`` adds the traceback.

Whatever stops ``wattline run`` before data flows (a folder it cannot create or
write, a port in use, a missing optional piece) ends the process with one line on
stderr, not a Python traceback; the folder or port it names comes with the flag
that set it.
"""

from __future__ import annotations

import logging
import os

import click

from wattline.contract.errors import WattlineError
from wattline.ingest.config import Settings

__all__ = ["startup_error"]

log = logging.getLogger("wattline")

def _flag_for(path: str, settings: Settings) -> str | None:
    """The flag of the folder ``path`` is, lies in or lies above, if any."""
    target = os.path.abspath(path)
    for folder, flag in ((settings.state_dir, "--state-dir"), (settings.store, "--store"),
                         (settings.resolved_spool_dir, "--spool-dir"),
                         (settings.resolved_dead_letter_dir, "--dead-letter-dir")):
        if not folder:
            continue
        folder = os.path.abspath(folder)
        if target == folder or os.sep.join((folder, "")) in os.sep.join((target, "")) \
                or folder.startswith(os.sep.join((target.rstrip(os.sep), ""))):
            return flag
    return None


def startup_error(err: BaseException, settings: Settings, *, debug: bool) -> click.ClickException:
    """The one-line error ``wattline run`` ends with when start-up fails with ``err``;
    with ``debug``, the traceback is logged first."""
    if debug:
        log.error("start-up failed", exc_info=err)
    if isinstance(err, WattlineError):
        return click.ClickException(str(err))
    if isinstance(err, OSError):
        what = err.strerror or str(err)
        if err.filename is not None:
            flag = _flag_for(os.fsdecode(err.filename), settings)
            given = f" (from {flag})" if flag else ""
            return click.ClickException(
                f"cannot start: {what}: {os.fsdecode(err.filename)}{given}; give a folder this "
                "user can create and write")
        if err.errno is not None and "address" in what.lower():
            return click.ClickException(
                f"cannot start: {what} ({settings.metrics_host}:{settings.metrics_port}); give "
                "another --metrics-port (0 picks a free one) or stop what listens there")
        return click.ClickException(f"cannot start: {what}")
    return click.ClickException(f"cannot start: {type(err).__name__}: {err} (run with --debug "
                                "for the traceback)")
