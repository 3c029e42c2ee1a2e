"""Reading the files the service is configured with (the site file, site codes, knowledge)
without letting a wrong path take the machine down.

A path may name a device (``/dev/zero``, ``/dev/urandom``), a named pipe or a file far
larger than any configuration: read whole, the first runs the process out of memory and a
pipe blocks the start for ever. ``read_config`` reads only regular files, opened without
blocking, and at most ``limit`` bytes (more is refused, not cut short).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: The largest configuration file read (the site file, the site codes).
MAX_CONFIG_BYTES = 1024 * 1024
#: The largest knowledge file read (the largest shipped is under 400 KB).
MAX_KNOWLEDGE_BYTES = 16 * 1024 * 1024


class TooLarge(ValueError):
    """The file is not a regular file, or larger than a configuration file can be."""


def read_config(path: Path, limit: int = MAX_CONFIG_BYTES) -> str:
    """The text of ``path`` (UTF-8); ``OSError`` when it cannot be opened, ``TooLarge`` when
    it is not a regular file or is over ``limit`` bytes, ``UnicodeDecodeError`` when it is
    not UTF-8."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # (a named pipe does not block the start)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise TooLarge(f"{path} is not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{path} is larger than {limit // 1024} KB")
    return data.decode("utf-8")
