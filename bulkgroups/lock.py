"""One run at a time per results file: an flock beside it. The kernel drops the lock when its
process dies, however it dies, so a lock left by a killed run is simply taken over."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


class Locked(Exception):
    """Another live process holds the lock; the message names it."""


def lock_path(results: Path) -> Path:
    return results.with_name(results.name + ".lock")


@contextlib.contextmanager
def run_lock(results: Path) -> Iterator[None]:
    path = lock_path(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise Locked(
                f"another bulkgroups run holds {path} (pid {holder}); "
                "wait for it to finish, or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
