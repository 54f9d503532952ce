"""Atomic replacement of a status store (a ``.gdb`` folder or a ``.gpkg`` file).

A new store is written beside the target under a temporary name that keeps the suffix (GDAL wants
``.gdb``), then swapped in: ``os.replace`` for a file; for a folder, Linux's
``renameat2(RENAME_EXCHANGE)`` swaps old and new in one step, elsewhere two renames whose gap
:func:`recover` closes. Leftovers of killed runs are removed by the next run that holds the
store's lock.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import cast

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_LEFTOVER = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)-[0-9a-f]+\.(?P<kind>tmp|old|del)$")


@functools.cache
def _libc_renameat2() -> Callable[[int, bytes, int, bytes, int], int] | None:
    """libc's ``renameat2``, looked up on the first swap of a folder (``ctypes.util`` may run
    ``ldconfig``: a file store's run never pays it)."""
    if not hasattr(os, "fork"):  # not POSIX
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return cast(Callable[[int, bytes, int, bytes, int], int], func)


def sibling(target: Path, kind: str, token: str) -> Path:
    """A hidden name beside ``target`` for a temporary, old or deleted copy, same suffix."""
    return target.with_name(f".{target.stem}.{os.getpid()}-{token}.{kind}{target.suffix}")


def remove(path: Path) -> None:
    """Remove a file or a folder tree (a store, or a temporary copy of one)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _exchange(a: Path, b: Path) -> bool:
    renameat2 = _libc_renameat2()
    if renameat2 is None:
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def replace(new: Path, target: Path, token: str) -> None:
    """Put the complete store ``new`` at ``target``, removing what was there."""
    if not new.is_dir() or not target.exists():
        os.replace(new, target)
        return
    if _exchange(new, target):
        remove(new)  # now holds the old store
        return
    old = sibling(target, "old", token)
    os.rename(target, old)
    os.rename(new, target)
    remove(old)


def delete(target: Path, token: str) -> bool:
    """Remove a store; first renamed away so that no half-deleted store keeps the name."""
    if not target.exists():
        return False
    doomed = sibling(target, "del", token)
    os.rename(target, doomed)
    remove(doomed)
    return True


def recover(target: Path) -> None:
    """Restore a store left renamed away by a run killed between two renames; drop leftovers.

    Called only while holding the store's lock (:mod:`cachestatus.store.lock`): then no other run
    is writing beside ``target``, and every temporary, old or deleted copy found is abandoned,
    whatever process, container or host made it.
    """
    try:
        entries = list(os.scandir(target.parent))
    except FileNotFoundError:
        return
    for entry in entries:
        match = _LEFTOVER.match(entry.name.removesuffix(target.suffix))
        if match is None or match["stem"] != target.stem or not entry.name.endswith(target.suffix):
            continue
        path = Path(entry.path)
        if match["kind"] == "old" and not os.path.lexists(target):
            os.rename(path, target)
        else:
            remove(path)
