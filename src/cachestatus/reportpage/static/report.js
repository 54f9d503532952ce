// The report page's map: the cache's own tile grid and CRS (known only by code and units), the
// stored tiles as background, the TaskStatus bundles of one level at a time coloured by status,
// MissingAreas hatched, the full extent outlined. Data come embedded (`cachestatus html`) or from
// the server's JSON endpoints (`serve`). `window.cachestatus` tells tests what was drawn.
(function () {
  'use strict';
  const config = JSON.parse(document.getElementById('cachestatus-config').textContent);
  const embedded = JSON.parse(document.getElementById('cachestatus-data').textContent);
  const state = {
    ready: false,
    level: null,
    tilesRequested: 0,
    tilesLoaded: 0,
    tileErrors: 0,
    drawn: {},
    missingDrawn: {},
    errors: [],
  };
  window.cachestatus = state;
  window.addEventListener('error', (event) => state.errors.push(String(event.message)));

  function fetchJson(path) {
    return fetch(config.apiBase + path).then((response) => {
      if (!response.ok) throw new Error(path + ': HTTP ' + response.status);
      return response.json();
    });
  }
  // A live page holds the data its table was written from too: the same read, not a second.
  const pageData = () => (embedded.page ? Promise.resolve(embedded.page) : fetchJson('page'));
  const levelData = (level) =>
    config.live
      ? fetchJson('bundles?level=' + level)
      : Promise.resolve((embedded.bundles || {})[String(level)] || null);

  function rgba(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return 'rgba(' + (n >> 16) + ',' + ((n >> 8) & 255) + ',' + (n & 255) + ',' + alpha + ')';
  }

  function hatch() {
    const canvas = document.createElement('canvas');
    canvas.width = canvas.height = 8;
    const context = canvas.getContext('2d');
    context.strokeStyle = config.colours.MISSING;
    context.lineWidth = 1.5;
    context.beginPath();
    context.moveTo(0, 8);
    context.lineTo(8, 0);
    context.stroke();
    return context.createPattern(canvas, 'repeat');
  }

  function bundleStyles(states) {
    return states.map(
      (name) =>
        new ol.Style({
          fill: new ol.Fill({ color: rgba(config.colours[name], 0.55) }),
          stroke: new ol.Stroke({ color: config.colours[name], width: 1.5 }),
        }),
    );
  }

  function rectangle(x0, y0, x1, y1) {
    return new ol.Polygon([[[x0, y0], [x0, y1], [x1, y1], [x1, y0], [x0, y0]]]);
  }

  function backgroundLayer(page, projection) {
    const grid = page.grid;
    if (!grid) return null;
    const image = config.live ? null : embedded.background.image;
    if (image) {
      // `--background mosaic`: one picture of a level, placed on its rectangle.
      const source = new ol.ImageStatic({ url: image.url, imageExtent: image.extent, projection: projection });
      source.on('imageloadstart', () => state.tilesRequested++);
      source.on('imageloadend', () => state.tilesLoaded++);
      source.on('imageloaderror', () => state.tileErrors++);
      return new ol.ImageLayer({ source: source });
    }
    const tiles = config.live ? null : embedded.background.tiles;
    const order = grid.resolutions.map((r, i) => [r, grid.levels[i]]).sort((a, b) => b[0] - a[0]);
    let levels = order.map((pair) => pair[1]);
    if (!config.live) {
      const kept = new Set(embedded.background.levels);
      levels = levels.filter((level) => kept.has(level));
      if (!levels.length) return null;
    }
    const resolutions = order.filter((pair) => levels.includes(pair[1])).map((pair) => pair[0]);
    const tileGrid = new ol.TileGrid({
      origin: grid.origin,
      resolutions: resolutions,
      tileSize: grid.tileSize,
      extent: grid.extent || undefined,
    });
    const source = new ol.XYZ({
      projection: projection,
      tileGrid: tileGrid,
      wrapX: false,
      transition: 0,
      tileUrlFunction: (coord) => {
        const level = levels[coord[0]];
        if (config.live) {
          return config.tileUrl
            .replace('{z}', level)
            .replace('{y}', coord[2])
            .replace('{x}', coord[1]);
        }
        return tiles[level + '/' + coord[2] + '/' + coord[1]];
      },
    });
    source.on('tileloadstart', () => state.tilesRequested++);
    source.on('tileloadend', () => state.tilesLoaded++);
    source.on('tileloaderror', () => state.tileErrors++);
    return new ol.TileLayer({ source: source });
  }

  function start(page) {
    const projection = new ol.Projection({ code: page.header.crs.code, units: page.header.crs.units });
    const extent = page.extent;
    const styles = bundleStyles(page.states);
    const bundleSource = new ol.VectorSource();
    const missingSource = new ol.VectorSource();
    const outlineSource = new ol.VectorSource();
    if (extent) outlineSource.addFeature(new ol.Feature(rectangle(extent[0], extent[1], extent[2], extent[3])));
    const bundles = new ol.VectorLayer({
      source: bundleSource,
      style: (feature) => styles[feature.get('status')],
    });
    const missing = new ol.VectorLayer({
      source: missingSource,
      style: new ol.Style({
        fill: new ol.Fill({ color: hatch() }),
        stroke: new ol.Stroke({ color: config.colours.MISSING, width: 1 }),
      }),
    });
    const outline = new ol.VectorLayer({
      source: outlineSource,
      style: new ol.Style({ stroke: new ol.Stroke({ color: '#333', width: 1.5, lineDash: [6, 4] }) }),
    });
    const layers = [outline, bundles, missing];
    const background = backgroundLayer(page, projection);
    if (background) layers.unshift(background);
    const resolutions = page.grid ? page.grid.resolutions : [];
    const span = extent ? Math.max(extent[2] - extent[0], extent[3] - extent[1]) : 1;
    const map = new ol.Map({
      target: 'map',
      layers: layers,
      controls: ol.defaultControls().extend([
        new ol.ScaleLine(),
        new ol.MousePosition({ coordinateFormat: ol.createStringXY(2), projection: projection }),
      ]),
      view: new ol.View({
        projection: projection,
        maxResolution: Math.max(span / 128, ...resolutions),
        minResolution: resolutions.length ? Math.min(...resolutions) / 8 : undefined,
        constrainResolution: false,
      }),
    });
    const view = map.getView();
    const current = { level: null, data: null, wanted: null };
    // The level shown follows the zoom: at each new resolution, the level with rows whose
    // resolution is nearest (by ratio). A level chosen otherwise (the selector, a problem)
    // stays until the resolution it was chosen at changes.
    let settled = null;
    const settle = () => { settled = view.getResolution(); };
    const drawable = page.levels.filter((row) => row.rows > 0 && row.resolution > 0);

    function levelFor(resolution) {
      let best = null;
      let distance = Infinity;
      for (const row of drawable) {
        const d = Math.abs(Math.log(resolution / row.resolution));
        if (d < distance) {
          distance = d;
          best = row.level;
        }
      }
      return best;
    }

    function fit(box) {
      if (box && box[2] > box[0] && box[3] > box[1]) {
        view.fit(box, { padding: [20, 20, 20, 20] });
      }
      settle();
    }

    function draw(level, data) {
      bundleSource.clear();
      missingSource.clear();
      const features = [];
      let box = null;
      if (data && data.count) {
        const u = data.unit;
        for (let i = 0; i < data.row.length; i++) {
          const x0 = data.x0 + u * data.xmin[i];
          const y0 = data.y0 + u * data.ymin[i];
          const x1 = data.x0 + u * data.xmax[i];
          const y1 = data.y0 + u * data.ymax[i];
          const feature = new ol.Feature(rectangle(x0, y0, x1, y1));
          feature.setId(level + '/' + data.row[i] + '/' + data.col[i]);
          feature.set('index', i);
          feature.set('status', data.status[i]);
          features.push(feature);
          box = box ? [Math.min(box[0], x0), Math.min(box[1], y0), Math.max(box[2], x1), Math.max(box[3], y1)] : [x0, y0, x1, y1];
        }
        bundleSource.addFeatures(features);
      }
      if (data) {
        const areas = new ol.GeoJSON().readFeatures(data.missing, {
          dataProjection: projection,
          featureProjection: projection,
        });
        missingSource.addFeatures(areas);
      }
      current.level = level;
      current.data = data;
      current.box = box;
      state.level = level;
      state.drawn[level] = features.length;
      state.missingDrawn[level] = missingSource.getFeatures().length;
      const note = document.getElementById('level-note');
      note.textContent = data && data.note ? data.note : '';
    }

    function select(level) {
      document.getElementById('level').value = String(level);
      current.wanted = level;
      return levelData(level).then((data) => {
        if (current.wanted === level) draw(level, data); // a later choice wins
      });
    }

    map.on('moveend', () => {
      const resolution = view.getResolution();
      if (resolution === settled) return;
      settled = resolution;
      const level = levelFor(resolution);
      if (level !== null && level !== current.wanted) select(level);
    });

    function describe(feature) {
      const d = current.data;
      const i = feature.get('index');
      const label = 'L' + String(current.level).padStart(2, '0') + '/R' + d.row[i].toString(16).padStart(4, '0') + 'C' + d.col[i].toString(16).padStart(4, '0');
      return [
        'bundle ' + label + '  status ' + d.states[d.status[i]],
        'tiles present ' + d.tilesPresent[i].toLocaleString() + ' of ' + d.tilesExpected[i].toLocaleString() + ' expected',
        'tile bytes ' + d.tileBytes[i].toLocaleString() + '  file bytes ' + d.fileBytes[i].toLocaleString(),
        d.detail[String(i)] ? 'detail ' + d.detail[String(i)] : '',
      ].filter(Boolean).join('\n');
    }

    function bundlesAt(pixel) {
      const found = [];
      map.forEachFeatureAtPixel(pixel, (feature) => { found.push(feature.getId()); }, {
        layerFilter: (layer) => layer === bundles,
        hitTolerance: 0,
      });
      return found;
    }

    map.on('singleclick', (event) => {
      const found = [];
      map.forEachFeatureAtPixel(event.pixel, (feature) => { found.push(feature); }, {
        layerFilter: (layer) => layer === bundles,
      });
      document.getElementById('info').textContent = found.length ? found.map(describe).join('\n\n') : 'No bundle here.';
    });

    const selector = document.getElementById('level');
    for (const row of page.levels) {
      const option = document.createElement('option');
      option.value = String(row.level);
      option.textContent = row.level + ' (' + row.rows.toLocaleString() + ' bundles)';
      selector.appendChild(option);
    }
    // A level chosen in the selector: the map zooms to its resolution (and to its bundles
    // when none is in view).
    selector.addEventListener('change', () => {
      const level = Number(selector.value);
      const row = page.levels.find((r) => r.level === level);
      if (row && row.resolution > 0) view.setResolution(row.resolution);
      settle();
      select(level).then(() => {
        const box = current.box;
        const [x, y] = view.getCenter();
        if (box && !(box[0] <= x && x <= box[2] && box[1] <= y && y <= box[3])) {
          view.setCenter([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2]);
        }
      });
    });

    for (const link of document.querySelectorAll('a.zoom')) {
      link.addEventListener('click', () => {
        const problem = page.problems[Number(link.dataset.problem)];
        const go = problem.level === null || problem.level === current.level ? Promise.resolve() : select(problem.level);
        go.then(() => fit(problem.extent));
      });
    }

    // Tests: the bundles drawn at the pixel of each map coordinate, after fitting the view to
    // the level's bundles (so each bundle's centre is in view).
    state.selectLevel = (level) => select(level).then(() => {
      fit(current.box || extent);
      map.renderSync();
      return state.drawn[level];
    });
    state.idle = () => new Promise((resolve) => {
      map.once('rendercomplete', () => resolve(true));
      map.render();
    });
    state.bundlesAt = bundlesAt;
    state.hitTest = (coordinates) => coordinates.map((c) => bundlesAt(map.getPixelFromCoordinate(c)));
    state.pixelOf = (coordinate) => {
      const pixel = map.getPixelFromCoordinate(coordinate);
      const rect = map.getTargetElement().getBoundingClientRect();
      return [rect.left + pixel[0], rect.top + pixel[1]];
    };
    state.map = map;
    state.levelFor = levelFor;

    const withFiles = page.levels.filter((row) => row.bundles > 0 && row.rows > 0);
    const first = withFiles.length ? withFiles[withFiles.length - 1].level : page.bundleLevels.length ? page.bundleLevels[page.bundleLevels.length - 1] : page.levels.length ? page.levels[0].level : null;
    fit(extent);
    const drawn = first === null ? Promise.resolve() : select(first);
    drawn.then(() => {
      map.once('rendercomplete', () => { state.ready = true; });
      map.render();
    });
  }

  pageData().then(start).catch((error) => {
    state.errors.push(String(error));
    document.getElementById('info').textContent = 'The page could not be drawn: ' + error;
  });
})();
