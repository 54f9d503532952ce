// The OpenLayers modules the report page uses, exposed as the global `ol` (the page's script
// reads them from there). Only these are bundled: `make vendor-js` rebuilds ol.js from them.
import Map from 'ol/Map.js';
import View from 'ol/View.js';
import Feature from 'ol/Feature.js';
import TileLayer from 'ol/layer/Tile.js';
import ImageLayer from 'ol/layer/Image.js';
import ImageStatic from 'ol/source/ImageStatic.js';
import VectorLayer from 'ol/layer/Vector.js';
import XYZ from 'ol/source/XYZ.js';
import VectorSource from 'ol/source/Vector.js';
import GeoJSON from 'ol/format/GeoJSON.js';
import TileGrid from 'ol/tilegrid/TileGrid.js';
import Projection from 'ol/proj/Projection.js';
import Polygon from 'ol/geom/Polygon.js';
import Style from 'ol/style/Style.js';
import Fill from 'ol/style/Fill.js';
import Stroke from 'ol/style/Stroke.js';
import ScaleLine from 'ol/control/ScaleLine.js';
import MousePosition from 'ol/control/MousePosition.js';
import {defaults as defaultControls} from 'ol/control/defaults.js';
import {createStringXY} from 'ol/coordinate.js';

globalThis.ol = {
  Map, View, Feature, TileLayer, ImageLayer, ImageStatic, VectorLayer, XYZ, VectorSource, GeoJSON, TileGrid,
  Projection, Polygon, Style, Fill, Stroke, ScaleLine, MousePosition, defaultControls,
  createStringXY,
};
