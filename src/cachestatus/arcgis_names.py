"""How an ArcGIS folder cache names its files, and the digest of its configuration: plain
names and patterns, without numpy, shared by its reader (:mod:`cachestatus.formats`) and by an
unchanged rebuild's answer (:mod:`cachestatus.unchanged`).

A folder cache is ``conf.xml`` (sometimes ``Conf.xml``), ``conf.cdi`` (the full extent,
optional) and ``_alllayers/Lnn/R{row:04x}C{col:04x}.bundle``. Users may name the cache folder,
a service folder holding ``Layers/``, or the ``conf.xml`` file itself.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

CONF_NAMES = ("conf.xml", "Conf.xml")
CDI_NAMES = ("conf.cdi", "Conf.cdi")
LAYERS_DIR = "_alllayers"
BUNDLE_SUFFIX = ".bundle"
#: Bundle file names: ``R{row:04x}C{col:04x}.bundle`` with four or more hex digits.
BUNDLE_NAME = re.compile(r"^R([0-9a-fA-F]{4,})C([0-9a-fA-F]{4,})$")
#: The stems ArcGIS writes (:attr:`~cachestatus.models.BundleKey.name`): lower-case hex, four
#: digits, or up to eight without a leading zero.
_HEX = r"(?:[0-9a-f]{4}|[1-9a-f][0-9a-f]{4,7})"
CANONICAL = re.compile(f"R({_HEX})C({_HEX})\\Z")
#: Level folders: ``L05``. ASCII digits only (``\d`` and ``int()`` also take Arabic-Indic or
#: full-width digits), at most 9 of them: a level ID is a 32-bit integer.
LEVEL_NAME = re.compile(r"^L([0-9]{1,9})$", re.IGNORECASE | re.ASCII)


def find_conf(path: Path) -> Path | None:
    """The ``conf.xml`` of a cache given as its folder, a service folder or the file itself."""
    if path.is_file():
        return path if path.name.lower() == "conf.xml" else None
    for folder in (path, path / "Layers"):
        for name in CONF_NAMES:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def level_folder_name(level: int) -> str:
    """``L05``: the folder of a level under ``_alllayers``."""
    return f"L{level:02d}"


def config_digest(conf: Path) -> str | None:
    """A digest of the bytes of the cache's configuration: ``conf`` (its ``conf.xml``) and the
    ``conf.cdi`` the reader reads beside it (the first of :data:`CDI_NAMES` there); ``None``
    when ``conf`` cannot be read. A rebuild records it; a later one that finds the same digest
    knows the tiling scheme and full extent without parsing them. Taken before the files are
    parsed: a file replaced in between then leaves a digest of the older bytes, which the next
    run does not find, never one of bytes that were not parsed."""
    digest = hashlib.sha256()
    try:
        digest.update(b"conf.xml\0" + conf.read_bytes())
        for name in CDI_NAMES:
            cdi = conf.parent / name
            if os.path.exists(cdi):
                digest.update(b"\0" + name.encode() + b"\0" + cdi.read_bytes())
                break
    except OSError:
        return None
    return digest.hexdigest()[:32]
