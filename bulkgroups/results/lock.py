"""One run at a time: an flock per results file and one per job. The kernel drops a lock when
its process dies, however it dies, so a lock left by a killed run is simply taken over."""

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


def job_lock_path(results: Path, job_name: str) -> Path:
    # Beside the results, not the job file: that folder is known to be writable, and each
    # night's file has its own name, so only a lock per job sees two nights overlap.
    return results.with_name(f".{job_name}.run.lock")


@contextlib.contextmanager
def hold(path: Path, *, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            raise Locked(
                f"another bulkgroups run of {what} is in progress (pid {holder}, lock {path}); "
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


@contextlib.contextmanager
def run_lock(results: Path, *, job_name: str | None = None) -> Iterator[None]:
    """The job's lock (when named), then the results file's."""
    with contextlib.ExitStack() as stack:
        if job_name is not None:
            stack.enter_context(hold(job_lock_path(results, job_name), what=f"job {job_name}"))
        stack.enter_context(hold(lock_path(results), what=str(results)))
        yield
