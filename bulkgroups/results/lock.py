"""One run at a time: an flock per results file and one per job. The kernel drops a lock when
its process dies, however it dies, so a lock left by a killed run is simply taken over. A run
that ends removes its lock files (a killed one cannot: the next run takes them over)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from bulkgroups.results.file import ResultsFileError, reason_of


class Locked(Exception):
    """Another live process holds the lock; the message names it."""


def lock_path(results: Path) -> Path:
    return results.with_name(results.name + ".lock")


def job_lock_path(results: Path, job_name: str) -> Path:
    # Beside the results, not the job file: that folder is known to be writable, and each
    # night's file has its own name, so only a lock per job sees two nights overlap.
    return results.with_name(f".{job_name}.run.lock")


def _acquire(path: Path, *, what: str) -> int:
    """An fd holding the flock of the file now at `path`.

    Lock files are removed when a run ends, and that needs care: a flock belongs to an inode,
    not to a name. The holder unlinks the file while it still holds the lock, so nobody can
    take it between the unlink and the release; but another process may have opened the old
    file just before the unlink and then get its flock once the holder lets go: it would be
    locking a file no longer at `path`, while a third process creates a new file there and
    locks that one too. So after acquiring, a locker checks that `path` still names the inode
    it locked, and if not, lets go and starts again with the new file."""
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ResultsFileError(path.parent, f"cannot write in the results folder (creating "
                                   f"the run lock {path.name}): {reason_of(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise Locked(
                f"another bulkgroups run of {what} is in progress (pid {holder}, lock {path}); "
                "wait for it to finish, or stop it first"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        mine = os.fstat(fd)
        try:
            there = os.stat(path)
        except FileNotFoundError:
            there = None
        if there is not None and (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)  # the holder we waited for removed it: lock the file now there


@contextlib.contextmanager
def hold(path: Path, *, what: str) -> Iterator[None]:
    """Hold the lock at `path` for the block; the lock file is gone when it ends. Raises
    Locked when another process holds it, ResultsFileError when it cannot be created."""
    fd = _acquire(path, what=what)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        # Unlink while still holding the lock (see `_acquire`), then let go.
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)  # closing the last fd releases the flock


@contextlib.contextmanager
def run_lock(results: Path, *, job_name: str | None = None) -> Iterator[None]:
    """The job's lock (when named), then the results file's."""
    with contextlib.ExitStack() as stack:
        if job_name is not None:
            stack.enter_context(hold(job_lock_path(results, job_name), what=f"job {job_name}"))
        stack.enter_context(hold(lock_path(results), what=str(results)))
        yield
