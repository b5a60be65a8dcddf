/* Vector tiles for the web map: a small Mapbox Vector Tile (MVT) decoder for
 * point layers, and a Leaflet canvas GridLayer that draws those points.
 *
 * Why this file exists: a layer with hundreds of thousands of sites cannot be
 * sent to a phone as GeoJSON and drawn as one marker each, so the service cuts
 * it into tiles (/collections/{id}/tiles/{z}/{x}/{y}.mvt). The usual browser
 * plugin for such tiles (Leaflet.VectorGrid) is only published on npm, and the
 * product installs with pip alone and may load nothing from a CDN. The service's
 * tiles hold points only, so the few hundred lines needed are written here.
 *
 * What is decoded (MVT 2.1, https://github.com/mapbox/vector-tile-spec):
 *   Tile    { repeated Layer layers = 3; }
 *   Layer   { version = 15; name = 1; repeated Feature features = 2;
 *             repeated string keys = 3; repeated Value values = 4; extent = 5; }
 *   Feature { id = 1; packed uint32 tags = 2; GeomType type = 3;
 *             packed uint32 geometry = 4; }
 *   Value   { string = 1; float = 2; double = 3; int64 = 4; uint64 = 5;
 *             sint64 = 6; bool = 7; }
 * Geometry is decoded for POINT features (MoveTo commands; a multipoint is one
 * MoveTo with several points). Lines and polygons keep their attributes but no
 * geometry: the map never asks for tiles of them.
 */
(function () {
  "use strict";

  var GEOM_POINT = 1;
  var CMD_MOVE_TO = 1;
  var TWO_32 = 4294967296;
  var utf8 = new TextDecoder("utf-8");

  // -- protocol buffers: just the wire format MVT uses ------------------------

  // A reader over bytes[start, end). Messages nest as length-delimited fields,
  // so a sub-message is read by a new Reader over its own slice.
  function Reader(bytes, start, end) {
    this.buf = bytes;
    this.pos = start || 0;
    this.end = end === undefined ? bytes.length : end;
  }

  // A varint as a JS number. Tags, lengths, geometry commands and parameters
  // fit in 28 bits (four bytes) almost always; anything longer goes through
  // varint64 so its high bits are not mangled by 32-bit bitwise operators.
  Reader.prototype.varint = function () {
    var buf = this.buf, start = this.pos, b, value;
    b = buf[this.pos++]; value = b & 0x7f; if (b < 0x80) return value;
    b = buf[this.pos++]; value |= (b & 0x7f) << 7; if (b < 0x80) return value;
    b = buf[this.pos++]; value |= (b & 0x7f) << 14; if (b < 0x80) return value;
    b = buf[this.pos++]; value |= (b & 0x7f) << 21; if (b < 0x80) return value;
    this.pos = start;
    return this.varint64(false);
  };

  // A 64-bit varint, assembled as low and high 32-bit halves. "signed" reads
  // the two's complement of int64 (a negative int64 is a ten-byte varint).
  // Values beyond 2^53 lose precision, as any JS number does.
  Reader.prototype.varint64 = function (signed) {
    var lo = 0, hi = 0, shift = 0, b;
    for (var i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("MVT: truncated varint");
      b = this.buf[this.pos++];
      if (shift < 28) lo |= (b & 0x7f) << shift;
      else if (shift === 28) { lo |= (b & 0x0f) << 28; hi |= (b & 0x7f) >> 4; }
      else hi |= (b & 0x7f) << (shift - 32);
      shift += 7;
      if (b < 0x80) return signed ? hi * TWO_32 + (lo >>> 0) : (hi >>> 0) * TWO_32 + (lo >>> 0);
    }
    throw new Error("MVT: varint longer than ten bytes");
  };

  // The slice of a length-delimited field (wire type 2), as [start, end).
  Reader.prototype.slice = function () {
    var length = this.varint(), start = this.pos;
    this.pos += length;
    if (this.pos > this.end) throw new Error("MVT: field runs past its message");
    return [start, this.pos];
  };

  Reader.prototype.message = function () {
    var s = this.slice();
    return new Reader(this.buf, s[0], s[1]);
  };

  Reader.prototype.string = function () {
    var s = this.slice();
    return utf8.decode(this.buf.subarray(s[0], s[1]));
  };

  // Little-endian fixed-width numbers (wire types 5 and 1).
  Reader.prototype.fixed = function (bytes, read) {
    if (this.pos + bytes > this.end) throw new Error("MVT: truncated number");
    var view = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, bytes);
    this.pos += bytes;
    return read.call(view, 0, true);
  };

  // Packed repeated uint32 (tags, geometry). Writers may also send them one
  // varint per field, which the spec allows readers to accept.
  Reader.prototype.packed = function (wire, into) {
    if (wire !== 2) { into.push(this.varint()); return; }
    var s = this.slice(), inner = new Reader(this.buf, s[0], s[1]);
    while (inner.pos < inner.end) into.push(inner.varint());
  };

  // Fields this decoder has no use for are stepped over, whatever they are.
  Reader.prototype.skip = function (wire) {
    if (wire === 0) this.varint64(false);
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.slice();
    else if (wire === 5) this.pos += 4;
    else throw new Error("MVT: unknown wire type " + wire);
  };

  // Calls field(number, wire) for every field of the message; field returns
  // false for a field it did not read, which is then skipped.
  Reader.prototype.each = function (field) {
    while (this.pos < this.end) {
      var tag = this.varint(), number = tag >>> 3, wire = tag & 7;
      if (field(number, wire) === false) this.skip(wire);
    }
    if (this.pos > this.end) throw new Error("MVT: message overruns its length");
  };

  function zigzag(n) { return (n >>> 1) ^ -(n & 1); }

  // -- MVT messages ------------------------------------------------------------

  function readValue(reader) {
    var value = null;
    reader.each(function (number, wire) {
      if (number === 1 && wire === 2) value = reader.string();
      else if (number === 2 && wire === 5) value = reader.fixed(4, DataView.prototype.getFloat32);
      else if (number === 3 && wire === 1) value = reader.fixed(8, DataView.prototype.getFloat64);
      else if (number === 4 && wire === 0) value = reader.varint64(true);
      else if (number === 5 && wire === 0) value = reader.varint64(false);
      else if (number === 6 && wire === 0) {
        var n = reader.varint64(false); // zigzag over 64 bits, in floating point
        value = n % 2 === 0 ? n / 2 : -(n + 1) / 2;
      } else if (number === 7 && wire === 0) value = reader.varint() !== 0;
      else return false;
    });
    return value;
  }

  // Points of a POINT feature in tile units (0..extent, y down), from the
  // command stream: [MoveTo(count) dx dy dx dy ...], each delta zigzagged and
  // relative to the previous point (the cursor carries across commands).
  function readPoints(geometry) {
    var points = [], x = 0, y = 0, i = 0;
    while (i < geometry.length) {
      var command = geometry[i++], id = command & 7, count = command >>> 3;
      if (id !== CMD_MOVE_TO) throw new Error("MVT: point geometry with command " + id);
      for (var k = 0; k < count; k++) {
        if (i + 2 > geometry.length) throw new Error("MVT: truncated point");
        x += zigzag(geometry[i++]);
        y += zigzag(geometry[i++]);
        points.push([x, y]);
      }
    }
    return points;
  }

  function readFeature(reader) {
    var feature = { id: undefined, type: 0, tags: [], geometry: [] };
    reader.each(function (number, wire) {
      if (number === 1 && wire === 0) feature.id = reader.varint64(false);
      else if (number === 2) reader.packed(wire, feature.tags);
      else if (number === 3 && wire === 0) feature.type = reader.varint();
      else if (number === 4) reader.packed(wire, feature.geometry);
      else return false;
    });
    return feature;
  }

  function readLayer(reader) {
    var layer = { name: "", version: 1, extent: 4096, keys: [], values: [], features: [] };
    var raw = [];
    reader.each(function (number, wire) {
      if (number === 15 && wire === 0) layer.version = reader.varint();
      else if (number === 1 && wire === 2) layer.name = reader.string();
      else if (number === 2 && wire === 2) raw.push(readFeature(reader.message()));
      else if (number === 3 && wire === 2) layer.keys.push(reader.string());
      else if (number === 4 && wire === 2) layer.values.push(readValue(reader.message()));
      else if (number === 5 && wire === 0) layer.extent = reader.varint();
      else return false;
    });
    // Keys and values may come after the features that use them, so the
    // tags (pairs of key index, value index) are resolved once all are read.
    layer.features = raw.map(function (f) {
      var properties = {};
      for (var i = 0; i + 1 < f.tags.length; i += 2) {
        var key = layer.keys[f.tags[i]];
        if (key === undefined || f.tags[i + 1] >= layer.values.length) throw new Error("MVT: tag out of range");
        properties[key] = layer.values[f.tags[i + 1]];
      }
      return {
        id: f.id,
        type: f.type,
        properties: properties,
        points: f.type === GEOM_POINT ? readPoints(f.geometry) : null
      };
    });
    return layer;
  }

  // Bytes (ArrayBuffer or Uint8Array) -> { layerName: layer }. An empty body is
  // an empty tile: the service answers so where a layer has nothing.
  function decode(data) {
    var bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
    var layers = {}, reader = new Reader(bytes);
    reader.each(function (number, wire) {
      if (number !== 3 || wire !== 2) return false;
      var layer = readLayer(reader.message());
      layers[layer.name] = layer;
    });
    return layers;
  }

  // -- the Leaflet layer -----------------------------------------------------

  // One canvas per map tile, drawn from the layer's vector tiles. Each drawn
  // point is remembered on its canvas (tile pixels, world pixels, attributes),
  // so clicks are hit-tested without asking the server and tests can count them.
  var PointTiles = L.GridLayer.extend({
    options: {
      url: "",            // with {z}, {x}, {y}; relative to the page
      layer: "",          // layer name inside the tiles (the collection id)
      radius: 5,          // dot radius, CSS pixels
      colour: null,       // function(properties) -> CSS colour, or null to hide the point
      shift: null,        // function(lon, lat) -> [lon, lat] when the basemap is not WGS-84
      cacheSize: 96       // decoded vector tiles kept (a screen shows ~24), so redraws and zooming back cost nothing
    },

    initialize: function (options) {
      L.GridLayer.prototype.initialize.call(this, options);
      this._sources = new Map();
      this.requests = 0;
    },

    createTile: function (coords, done) {
      var self = this, canvas = L.DomUtil.create("canvas", "gs-vt-tile");
      var size = this.getTileSize(), ratio = window.devicePixelRatio || 1;
      canvas.width = Math.round(size.x * ratio);
      canvas.height = Math.round(size.y * ratio);
      Promise.all(this._sourceTiles(coords).map(function (c) { return self._source(c); }))
        .then(function (sources) {
          self._draw(canvas, coords, sources, ratio);
          done(null, canvas);
        }, function (error) { done(error, canvas); });
      return canvas;
    },

    // The vector tiles a map tile needs. On a WGS-84 basemap it is the tile
    // itself. On a GCJ-02 one (Amap) every point moves a few hundred metres,
    // so the map tile shows points from the WGS-84 tiles under its area moved
    // back: up to four of them at the same zoom.
    _sourceTiles: function (coords) {
      if (!this.options.shift) return [coords];
      var crs = L.CRS.EPSG3857, z = coords.z, size = this.getTileSize().x;
      var pad = this.options.radius + 1, shift = this.options.shift;
      var nw = coords.scaleBy(this.getTileSize()).subtract([pad, pad]), se = nw.add([size + 2 * pad, size + 2 * pad]);
      function back(point) {
        // The inverse of the shift, to a metre or so: it varies slowly.
        var ll = crs.pointToLatLng(point, z), g = shift(ll.lng, ll.lat);
        return crs.latLngToPoint(L.latLng(2 * ll.lat - g[1], 2 * ll.lng - g[0]), z);
      }
      var a = back(nw), b = back(se), last = Math.pow(2, z) - 1, out = [];
      var x0 = Math.max(0, Math.floor(Math.min(a.x, b.x) / size)), x1 = Math.min(last, Math.floor(Math.max(a.x, b.x) / size));
      var y0 = Math.max(0, Math.floor(Math.min(a.y, b.y) / size)), y1 = Math.min(last, Math.floor(Math.max(a.y, b.y) / size));
      for (var x = x0; x <= x1; x++) for (var y = y0; y <= y1; y++) out.push({ x: x, y: y, z: z });
      return out;
    },

    // A decoded vector tile {x, y, z, layer}, from the cache or the server.
    _source: function (c) {
      var key = c.z + "/" + c.x + "/" + c.y, cached = this._sources.get(key), self = this;
      if (cached) {
        this._sources.delete(key); // most recently used goes last
        this._sources.set(key, cached);
        return cached;
      }
      var url = L.Util.template(this.options.url, { z: c.z, x: c.x, y: c.y });
      this.requests++;
      var promise = fetch(url).then(function (response) {
        if (!response.ok) throw new Error(url + ": " + response.status);
        return response.arrayBuffer();
      }).then(function (buffer) {
        return { x: c.x, y: c.y, z: c.z, key: key, layer: decode(buffer)[self.options.layer] || null };
      });
      // A failed request is not cached: the next redraw asks again.
      promise.catch(function () { self._sources.delete(key); });
      this._sources.set(key, promise);
      if (this._sources.size > this.options.cacheSize) this._sources.delete(this._sources.keys().next().value);
      return promise;
    },

    _draw: function (canvas, coords, sources, ratio) {
      var crs = L.CRS.EPSG3857, z = coords.z, size = this.getTileSize().x, r = this.options.radius;
      var origin = coords.scaleBy(this.getTileSize()), shift = this.options.shift, colourOf = this.options.colour;
      var byColour = {}, drawn = [], decoded = 0;
      sources.forEach(function (source) {
        if (!source.layer) return;
        var extent = source.layer.extent;
        source.layer.features.forEach(function (feature) {
          if (!feature.points) return;
          decoded += feature.points.length;
          var colour = colourOf ? colourOf(feature.properties) : "#333";
          if (!colour) return; // filtered out (a hidden kind)
          feature.points.forEach(function (p) {
            // With several source tiles, a point in one's buffer is also
            // inside its neighbour, which is loaded too: draw it once.
            if (shift && (p[0] < 0 || p[1] < 0 || p[0] >= extent || p[1] >= extent)) return;
            // World pixels at this zoom: Leaflet's projection of the same spot.
            var wx = (source.x + p[0] / extent) * size, wy = (source.y + p[1] / extent) * size;
            if (shift) {
              var ll = crs.pointToLatLng(L.point(wx, wy), z), g = shift(ll.lng, ll.lat);
              var moved = crs.latLngToPoint(L.latLng(g[1], g[0]), z);
              wx = moved.x; wy = moved.y;
            }
            var x = wx - origin.x, y = wy - origin.y;
            if (x < -r || y < -r || x > size + r || y > size + r) return;
            (byColour[colour] = byColour[colour] || []).push(x, y);
            drawn.push({
              x: x, y: y, wx: wx, wy: wy, properties: feature.properties,
              // Inside the tile proper (not its buffer): each point is inside exactly one tile.
              inside: x >= 0 && y >= 0 && x < size && y < size
            });
          });
        });
      });
      var ctx = canvas.getContext("2d");
      ctx.scale(ratio, ratio);
      // One path per colour: thousands of dots in a handful of calls.
      var paths = Object.keys(byColour).map(function (colour) {
        var xy = byColour[colour], path = new Path2D();
        for (var i = 0; i < xy.length; i += 2) {
          path.moveTo(xy[i] + r, xy[i + 1]);
          path.arc(xy[i], xy[i + 1], r, 0, 2 * Math.PI);
        }
        return { colour: colour, path: path };
      });
      // White halos first and every fill after: a lone dot stands out from the
      // map as a marker does, and where dots crowd together their colours
      // show rather than a white smear of outlines.
      ctx.lineWidth = 3;
      ctx.strokeStyle = "#ffffff";
      paths.forEach(function (p) { ctx.stroke(p.path); });
      paths.forEach(function (p) { ctx.fillStyle = p.colour; ctx.fill(p.path); });
      canvas._gsTile = {
        key: z + "/" + coords.x + "/" + coords.y, z: z, ox: origin.x, oy: origin.y,
        sources: sources.map(function (s) { return s.key; }),
        decoded: decoded, points: drawn
      };
    },

    // Tiles drawn at the current zoom and still on the map.
    _drawnTiles: function () {
      var out = [];
      if (!this._map) return out;
      for (var key in this._tiles) {
        var tile = this._tiles[key];
        if (tile.current && tile.el._gsTile) out.push(tile.el._gsTile);
      }
      return out;
    },

    // The drawn point nearest to latlng within tolerance CSS pixels, or null:
    // {properties, latlng}. Only the tiles around the spot are searched.
    pointAt: function (latlng, tolerance) {
      var best = null, bestDistance = tolerance, crs = L.CRS.EPSG3857;
      var tiles = this._drawnTiles(), size = this.getTileSize().x;
      for (var t = 0; t < tiles.length; t++) {
        var tile = tiles[t], p = crs.latLngToPoint(latlng, tile.z);
        if (p.x < tile.ox - tolerance || p.y < tile.oy - tolerance ||
            p.x > tile.ox + size + tolerance || p.y > tile.oy + size + tolerance) continue;
        for (var i = 0; i < tile.points.length; i++) {
          var point = tile.points[i], d = Math.sqrt(Math.pow(point.wx - p.x, 2) + Math.pow(point.wy - p.y, 2));
          if (d <= bestDistance) {
            bestDistance = d;
            best = { properties: point.properties, latlng: crs.pointToLatLng(L.point(point.wx, point.wy), tile.z) };
          }
        }
      }
      return best;
    },

    // No tile of the layer is still being fetched, drawn or faded in.
    idle: function () {
      if (!this._map || this.isLoading()) return false;
      for (var key in this._tiles) if (this._tiles[key].current && !this._tiles[key].active) return false;
      return true;
    },

    // For tests and the curious: per drawn map tile, the vector tiles used,
    // how many points they held and which points were drawn inside it.
    stats: function () {
      var tiles = {}, ids = [];
      this._drawnTiles().forEach(function (tile) {
        var inside = tile.points.filter(function (p) { return p.inside; });
        tiles[tile.key] = {
          sources: tile.sources,
          decoded: tile.decoded,
          drawn: inside.map(function (p) {
            var ll = L.CRS.EPSG3857.pointToLatLng(L.point(p.wx, p.wy), tile.z);
            return {
              id: p.properties.id, kind: p.properties.kind, name: p.properties.name, count: p.properties.count,
              x: p.x, y: p.y, lng: ll.lng, lat: ll.lat
            };
          })
        };
        inside.forEach(function (p) { ids.push(p.properties.id); });
      });
      return { tiles: tiles, ids: ids, requests: this.requests };
    }
  });

  window.GeoServiceTiles = {
    decode: decode,
    pointLayer: function (options) { return new PointTiles(options); }
  };
})();
