/* The coverage map's script: draws the page's JSON block (geo_service/web/
 * coverage_map.py) on the Leaflet map folium made. Every text of the block
 * (town and site names, tooltips, the legend) becomes a text node: none is
 * ever read as markup, so a name such as "<img onerror=...>" or "${...}"
 * shows as itself.
 */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  // Narrower than this, the legend starts folded so the map stays in view.
  var NARROW = 600;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) {
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    return node;
  }

  // The uncovered cells' hatch: thin grey lines with the town's colour
  // showing between them (an inline SVG pattern the map's paths refer to).
  function hatchPattern() {
    var defs = svg("svg", { width: 0, height: 0, "aria-hidden": "true", style: "position:absolute" });
    var pattern = svg("pattern", {
      id: "cov-hatch", width: 7, height: 7, patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)"
    });
    pattern.appendChild(svg("line", { x1: 0, y1: 0, x2: 0, y2: 7, stroke: "#3d4451", "stroke-width": 1.6, "stroke-opacity": 0.75 }));
    var wrap = svg("defs", {});
    wrap.appendChild(pattern);
    defs.appendChild(wrap);
    document.body.appendChild(defs);
  }

  // A tooltip: a bold first line, then one line each.
  function tooltip(content) {
    return el("div", { "class": "cov-tooltip" }, [el("b", { text: content.title })].concat(
      (content.lines || []).map(function (line) { return el("div", { text: line }); })));
  }

  function lines(texts) {
    var node = el("div");
    texts.forEach(function (text, i) {
      if (i) node.appendChild(el("br"));
      node.appendChild(document.createTextNode(text));
    });
    return node;
  }

  function legend(data) {
    var body = el("div", { "class": "cov-legend-body" }, [
      el("b", { text: data.title }),
      el("div", { text: data.subtitle })
    ]);
    if (data.sample) body.appendChild(el("div", { "class": "cov-sample", text: data.sample }));
    data.bands.forEach(function (band) {
      var swatch = el("span", { "class": "cov-swatch" });
      swatch.style.background = band.colour;
      body.appendChild(el("div", {}, [swatch, band.text]));
    });
    body.appendChild(el("div", {}, [el("span", { "class": "cov-swatch cov-uncovered" }), data.uncovered]));
    body.appendChild(el("div", {}, [el("span", { "class": "cov-swatch cov-site" }), data.sites]));
    data.lines.forEach(function (line) { body.appendChild(el("div", { text: line })); });
    body.appendChild(el("div", { "class": "cov-note", text: data.note }));
    var box = el("details", { "class": "cov-legend", id: "cov-legend" }, [
      el("summary", { text: data.heading }), body
    ]);
    box.open = window.innerWidth >= NARROW;
    // Clicks and drags on the legend stay off the map.
    L.DomEvent.disableClickPropagation(box);
    L.DomEvent.disableScrollPropagation(box);
    return box;
  }

  function overlaps(a, b) {
    return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  }

  // Where each town's label goes: at its town's inner point if nothing is
  // there, else the nearest nearby spot clear of every dot and star (and of
  // the labels placed before it). Measured in screen pixels, so redone
  // after every zoom.
  function placeLabels(map, labels, symbols) {
    var pad = 3;
    var boxes = symbols.map(function (symbol) {
      var r = symbol.getElement ? symbol.getElement().getBoundingClientRect() : symbol._path.getBoundingClientRect();
      return { left: r.left - pad, right: r.right + pad, top: r.top - pad, bottom: r.bottom + pad };
    });
    var offsets = [[0, 0]];
    for (var step = 1; step <= 8; step++) {
      var d = step * 9;
      offsets.push([0, -d], [0, d], [d * 1.6, 0], [-d * 1.6, 0], [d, -d], [-d, -d], [d, d], [-d, d]);
    }
    labels.forEach(function (label) {
      label.marker.setLatLng(label.at);
      var text = label.marker.getElement().firstChild;
      var home = text.getBoundingClientRect();
      var best = null;
      offsets.some(function (offset) {
        var moved = { left: home.left + offset[0], right: home.right + offset[0], top: home.top + offset[1], bottom: home.bottom + offset[1] };
        var hits = boxes.filter(function (b) { return overlaps(moved, b); }).length;
        if (!best || hits < best.hits) best = { hits: hits, offset: offset, box: moved };
        return hits === 0;
      });
      var point = map.latLngToContainerPoint(label.at).add(L.point(best.offset[0], best.offset[1]));
      label.marker.setLatLng(map.containerPointToLatLng(point));
      boxes.push(best.box);
    });
  }

  function draw(map, data) {
    document.documentElement.lang = data.lang === "en" ? "en" : "zh-CN";
    hatchPattern();
    // With no tile layer the map has no zoom range of its own.
    map.setMinZoom(8);
    map.setMaxZoom(18);
    var labels = [], symbols = [];
    data.towns.forEach(function (town) {
      L.geoJSON(town.geometry, {
        style: { fillColor: town.fill, fillOpacity: 0.8, color: "#4b5563", weight: 1.2 }
      }).bindTooltip(tooltip(town.tooltip), { sticky: true }).addTo(map);
      if (town.uncovered) {
        L.geoJSON(town.uncovered, {
          interactive: false,
          style: { fillColor: "url(#cov-hatch)", fillOpacity: 1, stroke: false }
        }).addTo(map);
      }
    });
    data.sites.forEach(function (site) {
      symbols.push(L.circleMarker(site.at, { className: "cov-site", radius: 4, color: "#fff", weight: 1.5, fillColor: "#111827", fill: true, fillOpacity: 1 })
        .bindTooltip(tooltip(site.tooltip), { sticky: true }).addTo(map));
    });
    data.suggested.forEach(function (site) {
      symbols.push(L.marker(site.at, {
        icon: L.divIcon({ className: "cov-new", html: el("span", { text: "★" + site.number }), iconSize: [30, 30], iconAnchor: [15, 15] }),
        zIndexOffset: 1000
      }).bindTooltip(tooltip(site.tooltip)).addTo(map));
    });
    data.towns.forEach(function (town) {
      var marker = L.marker(town.label.at, {
        // Sized by its text and centred on its point by the stylesheet.
        icon: L.divIcon({ className: "cov-label", html: lines(town.label.lines), iconSize: [0, 0], iconAnchor: [0, 0] }),
        // The label lets the pointer through to its town (and the town's tooltip).
        interactive: false,
        keyboard: false
      }).addTo(map);
      labels.push({ marker: marker, at: L.latLng(town.label.at) });
    });
    var box = legend(data.legend);
    map.getContainer().parentNode.appendChild(box);
    // The whole district in view, beside the open legend rather than under it
    // (quarter zoom steps, so a phone's narrow screen is filled).
    map.options.zoomSnap = 0.25;
    if (data.bounds) {
      var side = box.open ? box.offsetWidth + 16 : 8;
      map.fitBounds(data.bounds, { animate: false, paddingTopLeft: [8, 8], paddingBottomRight: [side, box.open ? 8 : box.offsetHeight + 24] });
    }
    placeLabels(map, labels, symbols);
    map.on("zoomend", function () { placeLabels(map, labels, symbols); });
    window.gsCoverage = { map: map, towns: data.towns, suggested: data.suggested }; // for tests
    document.body.setAttribute("data-cov-ready", "1");
  }

  window.GeoServiceCoverage = { draw: draw };
})();
