/* The coverage map's script: draws the page's JSON block (geo_service/web/
 * coverage_map.py) on the Leaflet map folium made. Every text of the block
 * (town and site names, tooltips, the legend) becomes a text node: none is
 * ever read as markup, so a name such as "<img onerror=...>" or "${...}"
 * shows as itself.
 */
(function () {
  "use strict";

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
    var box = el("div", { "class": "cov-legend", id: "cov-legend" }, [
      el("b", { text: data.title }),
      el("div", { text: data.subtitle })
    ]);
    if (data.sample) box.appendChild(el("div", { "class": "cov-sample", text: data.sample }));
    data.bands.forEach(function (band) {
      var swatch = el("span");
      swatch.style.background = band.colour;
      box.appendChild(el("div", {}, [swatch, band.text]));
    });
    box.appendChild(el("div", {}, [el("span", { "class": "cov-uncovered" }), data.uncovered]));
    box.appendChild(el("div", {}, [el("span", { "class": "cov-site" }), data.sites]));
    data.lines.forEach(function (line) { box.appendChild(el("div", { text: line })); });
    box.appendChild(el("div", { "class": "cov-note", text: data.note }));
    return box;
  }

  function draw(map, data) {
    // With no tile layer the map has no zoom range of its own.
    map.setMinZoom(8);
    map.setMaxZoom(18);
    data.towns.forEach(function (town) {
      L.geoJSON(town.geometry, {
        style: { fillColor: town.fill, fillOpacity: 0.65, color: "#555", weight: 1.5 }
      }).bindTooltip(tooltip(town.tooltip), { sticky: true }).addTo(map);
      L.marker(town.label.at, {
        icon: L.divIcon({ className: "cov-label", html: lines(town.label.lines), iconSize: [90, 34], iconAnchor: [45, 17] }),
        // The label lets the pointer through to its town (and the town's tooltip).
        interactive: false,
        keyboard: false
      }).addTo(map);
      if (town.uncovered) {
        L.geoJSON(town.uncovered, {
          interactive: false,
          style: { fillColor: "#b2182b", fillOpacity: 0.25, color: "#b2182b", weight: 0 }
        }).addTo(map);
      }
    });
    data.sites.forEach(function (site) {
      L.circleMarker(site.at, { radius: 5, color: "#1f2328", fill: true, fillOpacity: 1 })
        .bindTooltip(tooltip(site.tooltip), { sticky: true }).addTo(map);
    });
    data.suggested.forEach(function (site) {
      L.marker(site.at, {
        icon: L.divIcon({ className: "cov-new", html: el("span", { text: "★" + site.number }), iconSize: [36, 36], iconAnchor: [18, 18] })
      }).bindTooltip(tooltip(site.tooltip)).addTo(map);
    });
    document.body.appendChild(legend(data.legend));
    if (data.bounds) map.fitBounds(data.bounds, { animate: false });
    window.gsCoverage = { map: map, towns: data.towns, suggested: data.suggested }; // for tests
    document.body.setAttribute("data-cov-ready", "1");
  }

  window.GeoServiceCoverage = { draw: draw };
})();
