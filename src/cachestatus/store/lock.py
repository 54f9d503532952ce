"""One writer per status store: a lock file beside it, with its owner, host and time.

Runs that write or delete a store (rebuild, report, delete) take the lock first, so two overlapping
runs cannot both swap a store in (and lose a ``Jobs`` row), and a run never removes the temporary
store of another run. The lock works across processes, containers and hosts sharing a folder: it
is a file created with ``O_CREAT | O_EXCL`` (atomic on local file systems, NFS v3 and later and
SMB), holding who took it. Its owner refreshes its modification time while it works.

A lock is taken over only when its owner is provably gone:

- on the same machine and in the same PID namespace (same boot ID, same ``/proc/self/ns/pid``),
  when the owner's process no longer exists, or is another process that reused its PID (its start
  time differs);
- anywhere else (another host, another container), when the owner has not refreshed it for
  :data:`STALE_AFTER` seconds, many times its refresh period.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

from ..errors import StatusWriteError, StoreLocked, UsageError
from ..parallel import signals_deferred

#: Seconds between two refreshes of a held lock's modification time.
REFRESH_EVERY = 15.0
#: A lock not refreshed for this long is abandoned (its owner, on another host or in another
#: container, cannot be asked whether it still runs).
STALE_AFTER = 600.0


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def _host() -> str:
    """This machine's name: the kernel's node name, which ``gethostname`` returns on POSIX
    (without loading ``socket``)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


def _boot_id() -> str | None:
    return _read("/proc/sys/kernel/random/boot_id")


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/PID/stat`` field
    22), or ``None`` when there is no such process (or no ``/proc``)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock: what the lock file says."""

    token: str
    pid: int
    host: str
    user: str
    started: str
    command: str
    boot_id: str | None = None
    pid_namespace: str | None = None
    process_start: str | None = None

    @classmethod
    def me(cls, command: str) -> LockOwner:
        """This process."""
        try:
            user = os.getlogin()
        except OSError:
            user = str(os.getuid()) if hasattr(os, "getuid") else "?"
        return cls(
            token=os.urandom(8).hex(),
            pid=os.getpid(),
            host=_host(),
            user=user,
            started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            command=command,
            boot_id=_boot_id(),
            pid_namespace=_pid_namespace(),
            process_start=_process_start(os.getpid()),
        )

    @classmethod
    def parse(cls, text: str) -> LockOwner | None:
        """The owner a lock file names, or ``None`` for a file that names none."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            return None

        def named(key: str) -> str:
            return str(data.get(key, "?"))

        def maybe(key: str) -> str | None:
            return None if data.get(key) is None else str(data[key])

        return cls(
            token=named("token"),
            pid=int(data["pid"]),
            host=named("host"),
            user=named("user"),
            started=named("started"),
            command=named("command"),
            boot_id=maybe("boot_id"),
            pid_namespace=maybe("pid_namespace"),
            process_start=maybe("process_start"),
        )

    def describe(self) -> str:
        """``pid 123 of root on host web1, since 2026-11-30T10:00:00Z (rebuild)``."""
        return (
            f"pid {self.pid} of {self.user} on host {self.host}, since {self.started} "
            f"({self.command})"
        )

    def gone(self) -> bool:
        """Whether this owner's process provably no longer runs (see the module's doc)."""
        here = _boot_id()
        if here is None or self.boot_id != here or self.pid_namespace != _pid_namespace():
            return False  # another machine or container: this process cannot see it
        start = _process_start(self.pid)
        return start is None or start != self.process_start


def lock_path(target: Path) -> Path:
    """The lock file of the store at ``target``: ``.Status.gdb.lock`` beside it."""
    return target.with_name(f".{target.name}.lock")


class StoreLock:
    """The lock of the status store at ``target``, held as a context manager.

    Raises (on entering):
        StoreLocked: another run holds it (the message says who, and how to clear it).
        UsageError: the folder cannot be written (read-only, no permission).
    """

    def __init__(self, target: Path, command: str) -> None:
        self.target = target
        self.path = lock_path(target)
        self.owner = LockOwner.me(command)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, taking over an abandoned one; see the class doc for errors."""
        body = json.dumps(asdict(self.owner), indent=1).encode()
        for _ in range(3):
            try:
                made = self._create(body)
            except BaseException:
                # A signal held back while the lock was made acts as it is made: the lock, named
                # by now, goes with the run (release leaves one that is not this run's).
                self.release()
                raise
            if made:
                return
            self._take_over_or_refuse()
        raise StoreLocked(f"{self.path}: could not be taken; another run keeps taking it")

    def _create(self, body: bytes) -> bool:
        """Make the lock file, naming this run with ``body``; ``False`` when there is one.

        SIGINT and SIGTERM wait until it is made and named (where they can be held back): cut
        in between, a run would leave a lock naming no one, which holds off the next run for a
        minute. A write that fails removes the file, if it is still this run's.
        """
        with signals_deferred():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            except OSError as exc:
                raise UsageError(
                    f"{self.target.parent}: the status cannot be written there "
                    f"({exc.strerror}); give --status (or --out) a writable place"
                ) from None
            try:
                os.write(fd, body)
            except BaseException:
                self._discard(fd)
                raise
            os.close(fd)
        return True

    def _discard(self, fd: int) -> None:
        """Close the lock file just made at ``fd`` and remove it, unless another run took it
        over meanwhile (a write stuck for longer than a nameless lock is respected)."""
        try:
            made = os.fstat(fd)
            now = os.stat(self.path)
            if (now.st_dev, now.st_ino) == (made.st_dev, made.st_ino):
                os.unlink(self.path)
        except OSError:
            pass  # gone already, or cannot be told: left to the takeover rules
        finally:
            os.close(fd)

    def _take_over_or_refuse(self) -> None:
        text = _read(str(self.path))
        if text is None:
            return  # gone in the meantime: try again
        holder = LockOwner.parse(text)
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return
        if holder is not None and holder.gone():
            why = "its process has ended"
        elif age > STALE_AFTER:
            why = f"it was not refreshed for {age:,.0f} s"
        elif holder is None and age > REFRESH_EVERY * 4:
            why = "it names no owner"  # a file cut short before its owner was written
        else:
            who = holder.describe() if holder else "a run that has not written its name yet"
            raise StoreLocked(
                f"{self.target}: is being written by another run ({who}); wait until it ends, "
                f"or, if that run is gone, remove {self.path}"
            )
        # Renamed away first: of two runs taking it over at once, only one succeeds.
        doomed = self.path.with_name(f"{self.path.name}.{os.urandom(4).hex()}.stale")
        try:
            os.rename(self.path, doomed)
        except FileNotFoundError:
            return
        with contextlib.suppress(OSError):
            os.unlink(doomed)
        import logging  # loaded when needed: a run that takes the lock at once never logs

        logging.getLogger(__name__).info("%s: taken over, %s", self.path, why)

    def holds(self) -> bool:
        """Whether the lock file still names this run (it may have been taken over as stale)."""
        text = _read(str(self.path))
        holder = None if text is None else LockOwner.parse(text)
        return holder is not None and holder.token == self.owner.token

    def check(self) -> None:
        """Raise when the lock is no longer ours: nothing may be swapped in then.

        Raises:
            StatusWriteError: another run took the lock over.
        """
        if not self.holds():
            raise StatusWriteError(
                f"{self.target}: another run took over the lock of this store while this one "
                "worked (was this run suspended?); the status was not replaced"
            )

    def keep_fresh(self) -> None:
        """Refresh the lock's time every :data:`REFRESH_EVERY` seconds until released.

        Started once worker processes run (a thread before a fork is unsafe).
        """
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._refresh, name="store-lock", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Stop refreshing and remove the lock file, if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.holds():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
