"""``cachestatus serve``: a read-only local server of one cache, for ArcGIS REST, WMTS and XYZ
clients, and the live report page.

:mod:`.service` describes the cache (name, scheme, extent, CRS units); :mod:`.arcgis` and
:mod:`.wmts` build its documents from that description; :mod:`.app` routes a URL to its answer
(tiles through the reader's own tile addressing); :mod:`.server` carries the answers over HTTP.
"""
