"""ArcGIS tile packages ``.tpk``: a zip holding a cache folder (``conf.xml``, ``conf.cdi``,
``_alllayers``), usually under ``v101/<name>/``, with Compact V1 (or V2) bundles.

Read as the cache folder it holds (:class:`~.arcgis_cache.ArcGISCache` over a
:class:`~.arcgis_layout.ZipLayout`), in place, never extracted: a V1 bundle's whole ``.bundlx``
and the 4-byte size words of its live slots; a V2 bundle's header and index.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidCacheConfig
from .arcgis_cache import ArcGISCache, Configuration, read_conf
from .arcgis_folder import LAYERS_DIR
from .arcgis_layout import Layout, ZipLayout
from .base import FileHead
from .compact_v1 import STORAGE_FORMAT as COMPACT_V1
from .compact_v2 import STORAGE_FORMAT as COMPACT_V2
from .remote_file import RemoteFile


def _is_conf(name: str) -> bool:
    """Whether a member is a ``conf.xml`` (any case, at any depth: ``v101/Layers/conf.xml``)."""
    return name.rsplit("/", 1)[-1].lower() == "conf.xml"


class TpkPackage(ArcGISCache, RemoteFile):
    """A ``.tpk`` tile package: a Compact cache folder inside a zip (a local file, or an object
    read by ranges)."""

    name = "tpk"
    description = "ArcGIS tile package (.tpk: zip of a Compact V1 cache folder with conf.xml)"
    suffix = ".tpk"
    storage_formats = (COMPACT_V1, COMPACT_V2)

    @classmethod
    def recognise(cls, path: Path, found: FileHead) -> bool:
        """A zip holding a ``conf.xml``, whatever its name."""
        return any(_is_conf(name) for name in found.zip_names)

    def _open_layout(self, path: Path) -> Layout:
        archive = self._zip_archive()
        confs = sorted(name for name in archive.entries if _is_conf(name))
        if not confs:
            archive.close()
            raise InvalidCacheConfig(
                f"{self.where}: a zip without conf.xml; a .tpk tile package holds "
                "a cache folder (a .tpkx holds root.json)"
            )
        prefix, _, self._conf_name = confs[0].rpartition("/")
        return ZipLayout(archive, prefix + "/" if prefix else "")

    def _configure(self, layout: Layout) -> Configuration:
        scheme, extent = read_conf(layout, self._conf_name)
        if scheme.storage_format not in self.storage_formats:
            raise InvalidCacheConfig(
                f"{self.where}: conf.xml declares {scheme.storage_format}; "
                "this version reads .tpk packages of Compact bundles"
            )
        return scheme, extent, LAYERS_DIR
