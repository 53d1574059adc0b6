"""Whether the bot is connected to Discord, in a small file the container's health check reads.

The client calls ``write_status(state_dir, connected)`` when it connects,
resumes or disconnects, and again at least every ``WRITE_EVERY_SECONDS`` while
it runs; ``python -m bot check --connected`` (the image's HEALTHCHECK) calls
``read_status`` and reports healthy only for a connected status younger than
``STALE_AFTER_SECONDS``. A frozen process stops writing, so it turns unhealthy
even though its last word was "connected".

The file is ``$CHIMEIN_STATE_DIR/status.json``:
``{"connected": true, "updated": 1700000000.0, "pid": 7}``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bot.files import replace_file

FILE_NAME = "status.json"
WRITE_EVERY_SECONDS = 30
STALE_AFTER_SECONDS = 90  # three missed writes


def status_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / FILE_NAME


def write_status(state_dir: str | Path, connected: bool) -> None:
    """Replace the status file in one step, so a reader never sees half of it.

    No fsync: after a power loss a lost update only means "unhealthy" until the
    next write, and this runs every 30 s on the event loop, where it must stay cheap.
    """
    status = {"connected": bool(connected), "updated": time.time(), "pid": os.getpid()}
    replace_file(status_path(state_dir), json.dumps(status))


def read_status(state_dir: str | Path) -> dict | None:
    """The last status written, or None when there is none or it cannot be read."""
    try:
        status = json.loads(status_path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None
