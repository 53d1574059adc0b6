"""Writing the bot's small state files in one step: the one owner of atomic writes.

``replace_file`` writes to a temporary file beside the target and renames it
over the target (``os.replace``), so a reader, a crash or a full disk leaves
either the old file or the new one, never half of either. The temporary name is
unique, so two writers never share a half-written file, and it is removed when
the write fails.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_file(path: str | Path, text: str, *, durable: bool = False, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one step; the folder is created if missing.

    ``durable``: fsync before the rename, so the new text survives a power loss
    (worth it for settings people chose; not for a status rewritten every few seconds).
    ``mode``: the file's permissions (``mkstemp`` alone would leave 0600, which a
    health check running as another user cannot read).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
