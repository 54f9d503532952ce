// Builds ../src/cachestatus/reportpage/static/ol.js from entry.js: one minified IIFE, no
// source maps. OpenLayers also names EPSG:3857 and EPSG:4326 by their OGC http:// URIs; those aliases
// are dropped, so the page holds no URL at all (it names its CRS by code).
import { readFile } from 'node:fs/promises';
import * as esbuild from 'esbuild';

const uriAliases = {
  name: 'drop-uri-aliases',
  setup(build) {
    build.onLoad({ filter: /ol[\\/]proj[\\/]epsg(3857|4326)\.js$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      const kept = source.replace(/^.*'http:\/\/www\.opengis\.net[^']*'.*\n/gm, '');
      return { contents: kept, loader: 'js' };
    });
  },
};

await esbuild.build({
  entryPoints: ['entry.js'],
  bundle: true,
  minify: true,
  format: 'iife',
  legalComments: 'none',
  target: 'es2020',
  outfile: '../src/cachestatus/reportpage/static/ol.js',
  plugins: [uriAliases],
});
