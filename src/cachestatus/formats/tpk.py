"""ArcGIS tile packages ``.tpk``: a zip holding a cache folder (``conf.xml``, ``conf.cdi``,
``_alllayers``), usually under ``v101/<name>/``, with Compact V1 (or V2) bundles.

Bundles are read inside the zip, never extracted: a V1 bundle's whole ``.bundlx`` and the 4-byte
size words of its live slots (one seek and read each); a V2 bundle's header and index.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import CorruptBundle, InvalidCacheConfig
from ..models import Extent, Problem
from .arcgis_conf import parse_conf_cdi, parse_conf_xml, read_member
from .arcgis_folder import LAYERS_DIR, LEVEL_NAME, parse_bundle_name
from .base import BundleFile, BundleIndex, FileHead, StoredTile, ZipPackage
from .compact_v1 import BUNDLX_SIZE, decode_bundlx, summarize_v1, tile_slots, v1_tiles
from .tpkx import member_errors, read_v2_member, v2_member_tiles

V1, V2 = "esriMapCacheStorageModeCompact", "esriMapCacheStorageModeCompactV2"


class TpkPackage(ZipPackage):
    """A ``.tpk`` tile package: a Compact cache folder inside a zip."""

    name = "tpk"
    description = "ArcGIS tile package (.tpk: zip of a Compact V1 cache folder with conf.xml)"
    suffix = ".tpk"

    @classmethod
    def recognise(cls, path: Path, found: FileHead) -> bool:
        """A zip holding a ``conf.xml`` (at any depth: ``v101/Layers/conf.xml``), whatever its
        name."""
        return any(name.rsplit("/", 1)[-1].lower() == "conf.xml" for name in found.zip_names)

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        archive = self._archive()
        confs = sorted(n for n in self.entries if n.rsplit("/", 1)[-1].lower() == "conf.xml")
        if not confs:
            raise InvalidCacheConfig(
                f"{path}: a zip without conf.xml; a .tpk tile package holds "
                "a cache folder (a .tpkx holds root.json)"
            )
        conf = confs[0]
        self._root = conf.rsplit("/", 1)[0] + "/" if "/" in conf else ""
        self._scheme = parse_conf_xml(
            read_member(archive, conf, f"{path}!{conf}"), f"{path}!{conf}"
        )
        if self._scheme.storage_format not in (V1, V2):
            raise InvalidCacheConfig(
                f"{path}: conf.xml declares {self._scheme.storage_format}; "
                "this version reads .tpk packages of Compact bundles"
            )
        self._extent: Extent | None = None
        for name in ("conf.cdi", "Conf.cdi"):
            if self._root + name in self.entries:
                cdi = self._root + name
                self._extent = parse_conf_cdi(
                    read_member(archive, cdi, f"{path}!{cdi}"), f"{path}!{cdi}"
                )
                break

    def _level_entries(self) -> dict[int, list[str]]:
        prefix = self._root + LAYERS_DIR + "/"
        levels: dict[int, list[str]] = {}
        for name in self.entries:
            if name.startswith(prefix) and name.endswith(".bundle"):
                parts = name[len(prefix) :].split("/")
                match = LEVEL_NAME.match(parts[0]) if len(parts) == 2 else None
                if match:
                    levels.setdefault(int(match.group(1)), []).append(name)
        return levels

    def list_bundles(self, level: int) -> Iterator[BundleFile | Problem]:
        """The bundle entries of a level folder inside the zip."""
        for name in sorted(self._level_entries().get(level, [])):
            yield parse_bundle_name(level, name.rsplit("/", 1)[-1], f"{self.path}!{name}")

    def _offsets(self, bundle: BundleFile) -> np.ndarray:
        name = bundle.path.split("!", 1)[1]
        index_name = name[: -len(".bundle")] + ".bundlx"
        if index_name not in self.entries:
            raise CorruptBundle("no .bundlx index beside it")
        info = self.entries[index_name]
        with member_errors(info), self._archive().open(info) as member:
            return decode_bundlx(member.read(BUNDLX_SIZE + 1))  # never more than an index

    def read_bundle(self, bundle: BundleFile) -> BundleIndex:
        """Read a bundle inside the zip: V1 through its ``.bundlx``, V2 through its index."""
        if self._scheme.storage_format == V2:
            return read_v2_member(self, bundle)
        _, info, modified = self.member(bundle)
        key = bundle.key
        offsets = self._offsets(bundle)
        live = tile_slots(offsets, info.file_size)
        words = np.zeros(int(live.sum()), dtype=np.uint32)
        with member_errors(info), self._archive().open(info) as member:
            for i, offset in enumerate(offsets[live].tolist()):
                member.seek(offset)
                words[i] = int.from_bytes(member.read(4), "little")
        return summarize_v1(offsets, words, info.file_size, key.row, key.col, modified)

    def read_tiles(self, bundle: BundleFile) -> Iterator[StoredTile]:
        """The bundle's tiles inside the zip, in file order."""
        if self._scheme.storage_format == V2:
            yield from v2_member_tiles(self, bundle)
            return
        offsets = self._offsets(bundle)
        with member_errors(self.member(bundle)[1]), self.open_member(bundle) as (read, size):
            yield from v1_tiles(offsets, size, read, bundle.key.row, bundle.key.col)
