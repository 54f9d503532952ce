"""cachestatus: the status of map tile caches, without ArcGIS.

An open implementation of ArcGIS's *Manage Map Server Cache Status*::

    import cachestatus
    result = cachestatus.ManageMapServerCacheStatus("/arcgis/cache/Roads/Layers",
                                                    "REBUILD_CACHE_STATUS")
    print(result.getMessages())

and a plain API underneath: :func:`open_cache`, :func:`rebuild`, :func:`report`, :func:`missing`,
:func:`verify`, :func:`summary`, :func:`delete`, :func:`replay` (each the keyword form of a
function of :mod:`cachestatus.operations` taking the request objects of
:mod:`cachestatus.request`).
Attributes are imported on first use, so worker processes that only decode bundles stay light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0.dev0"

_LAZY = {
    "ManageMapServerCacheStatus": "tool",
    "Result": "tool",
    "open_cache": "formats",
    "rebuild": "operations",
    "report": "operations",
    "missing": "operations",
    "verify": "operations",
    "VerifyReport": "tilecheck",
    "delete": "operations",
    "summary": "operations",
    "replay": "operations",
    "level_infos": "operations",
    "Scanner": "scan",
    "CacheReader": "formats",
    "StatusReport": "models",
    "LevelSummary": "models",
    "BundleStatus": "models",
    "BundleState": "models",
    "BundleKey": "models",
    "Tile": "models",
    "Extent": "models",
    "TilingScheme": "models",
    "CacheStatusError": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cachestatus' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
