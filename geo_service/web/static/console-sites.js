/* The office console's Sites page: a table and a map of the sites an office
 * keeps, filters, a form made from the layer catalog, adding a site by
 * clicking the map or from an address, moving one by dragging, and "someone
 * changed this site" when an ETag no longer matches.
 *
 * Every value from the store or a person reaches the page as text
 * (textContent, value, option text): nothing is parsed as HTML. Writes go to
 * the service's editing API with the session cookie and the page's CSRF
 * token; the service checks everything again (town, ETag, catalog).
 */
(function () {
  "use strict";

  var C = window.ConsoleScreen;
  var DATA = C.data;
  var LANG = C.lang;
  var ROOT = C.root;
  var el = C.el;
  var clear = C.clear;
  var request = C.request;
  var problemText = C.problemText;
  // Changes go where the session cookie (Path=/admin) reaches: the editing API under /admin/api.
  var EDIT = "admin/api/";

  var TEXT = {
    zh: {
      layer: "图层", kind: "类型", status: "状态", sample: "示例", quality: "位置精度",
      town: "镇街", all: "全部", sampleOnly: "仅示例", realOnly: "仅真实", search: "按名称搜索",
      name: "名称", updated: "更新日期", edit: "编辑", add: "新增站点",
      addHint: "在地图上点击新站点的位置，或输入地址查找。", addressSearch: "按地址查找",
      addressPlaceholder: "输入地址，如：张店区人民西路", find: "查找", noCandidate: "没有找到这个地址",
      pickCandidate: "选择一个位置：", save: "保存", cancel: "取消", saved: "已保存",
      newSite: "新站点", editSite: "编辑站点", required: "必填",
      fix: "请改正标出的项目后再保存。", failed: "操作失败：", loading: "正在加载……",
      count: "共 {n} 个站点", none: "没有符合条件的站点",
      moveTo: "把“{name}”移到{town}？", moved: "已移动", moveOutside: "这个位置在{town}，不在您负责的镇街，不能移到这里。",
      outsideDistrict: "这个位置不在张店区内。", townHere: "所在镇街：{town}",
      conflictTitle: "有人已修改这个站点", conflictText: "在您编辑期间，有人保存了这个站点的新版本。请比较后选择：",
      field: "项目", theirs: "对方的版本", yours: "您的版本", keepTheirs: "采用对方版本（放弃我的修改）",
      keepMine: "用我的版本覆盖", deletedMeanwhile: "这个站点已被删除。",
      yes: "是", no: "否", yourTowns: "您负责：{towns}", allTowns: "全部镇街",
      position: "位置", positionHint: "经度 {lon}，纬度 {lat}", forbidden: "您无权修改这个站点。"
    },
    en: {
      layer: "Layer", kind: "Kind", status: "Status", sample: "Sample", quality: "Position quality",
      town: "Town", all: "All", sampleOnly: "Samples only", realOnly: "Real only", search: "Search by name",
      name: "Name", updated: "Updated", edit: "Edit", add: "Add a site",
      addHint: "Click the new site's position on the map, or look up an address.", addressSearch: "Find an address",
      addressPlaceholder: "An address, e.g. 张店区人民西路", find: "Find", noCandidate: "No such address found",
      pickCandidate: "Pick a position:", save: "Save", cancel: "Cancel", saved: "Saved",
      newSite: "New site", editSite: "Edit site", required: "required",
      fix: "Please correct the marked fields, then save.", failed: "Failed: ", loading: "Loading…",
      count: "{n} sites", none: "No site matches",
      moveTo: "Move “{name}” to {town}?", moved: "Moved", moveOutside: "This position is in {town}, not one of your towns: the site cannot move there.",
      outsideDistrict: "This position is outside the district.", townHere: "Town: {town}",
      conflictTitle: "Someone changed this site", conflictText: "While you were editing, someone saved a new version of this site. Compare and choose:",
      field: "Field", theirs: "Their version", yours: "Your version", keepTheirs: "Keep theirs (drop my changes)",
      keepMine: "Overwrite with mine", deletedMeanwhile: "This site has been deleted.",
      yes: "yes", no: "no", yourTowns: "Your towns: {towns}", allTowns: "All towns",
      position: "Position", positionHint: "lon {lon}, lat {lat}", forbidden: "You may not change this site."
    }
  };
  var T = TEXT[LANG];
  var t = C.words(TEXT);
  function label(item) { return (item && (LANG === "en" ? item.en : item.zh)) || ""; }

  function option(value, text, selected) {
    var node = el("option", { value: value, text: text });
    if (selected) node.selected = true;
    return node;
  }

  // -- state ------------------------------------------------------------------------------

  var layers = {};
  DATA.layers.forEach(function (layer) { layers[layer.id] = layer; });
  var townName = {};
  DATA.towns.forEach(function (town) { townName[town.code] = town.name; });
  var mine = DATA.person.role === "admin" ? null : DATA.person.towns;
  var state = { layer: DATA.layers[0].id, sites: [], selected: null, adding: false, markers: {} };

  // -- layout --------------------------------------------------------------------------------

  var main = document.getElementById("console-main");
  var bar = el("div", { class: "sites-bar", id: "sites-bar" });
  var status = el("p", { class: "sites-status", id: "sites-status", role: "status", "aria-live": "polite" });
  var mapBox = el("div", { id: "sites-map", class: "sites-map" });
  var table = el("table", { id: "sites-table", class: "sites-table" });
  var panel = el("section", { id: "site-panel", class: "site-panel", hidden: "" });
  main.appendChild(bar);
  main.appendChild(status);
  main.appendChild(el("div", { class: "sites-body" }, [mapBox, panel]));
  main.appendChild(el("div", { class: "sites-table-box" }, [table]));

  function select(id, labelText, options) {
    var node = el("select", { id: id });
    options.forEach(function (o) { node.appendChild(o); });
    return [el("label", { for: id, text: labelText }), node];
  }

  var layerSelect, kindSelect, statusSelect, sampleSelect, qualitySelect, townSelect, searchInput;
  function buildBar() {
    clear(bar);
    var layerParts = select("filter-layer", T.layer, DATA.layers.filter(function (l) { return l.geometry === "Point"; }).map(function (l) { return option(l.id, label(l), l.id === state.layer); }));
    layerSelect = layerParts[1];
    var layer = layers[state.layer];
    var kinds = [option("", T.all)].concat(Object.keys(layer.kinds).map(function (k) { return option(k, label(layer.kinds[k])); }));
    var kindParts = select("filter-kind", T.kind, kinds);
    kindSelect = kindParts[1];
    var statusValues = valuesOf(layer, "status");
    var statusParts = select("filter-status", T.status, [option("", T.all)].concat(statusValues.map(function (v) { return option(v[0], LANG === "en" ? v[2] : v[1]); })));
    statusSelect = statusParts[1];
    var sampleParts = select("filter-sample", T.sample, [option("", T.all), option("true", T.sampleOnly), option("false", T.realOnly)]);
    sampleSelect = sampleParts[1];
    var qualityParts = select("filter-quality", T.quality, [option("", T.all)].concat(valuesOf(layer, "position_quality").map(function (v) { return option(v[0], LANG === "en" ? v[2] : v[1]); })));
    qualitySelect = qualityParts[1];
    var towns = DATA.towns.filter(function (town) { return !mine || mine.indexOf(town.code) >= 0; });
    var townParts = select("filter-town", T.town, [option("", mine ? t("yourTowns", { towns: towns.map(function (x) { return x.name; }).join("、") }) : T.allTowns)].concat(towns.map(function (town) { return option(town.code, town.name); })));
    townSelect = townParts[1];
    searchInput = el("input", { id: "filter-name", type: "search", placeholder: T.search, "aria-label": T.search });
    var addButton = el("button", { id: "add-site", type: "button", class: "primary", text: T.add });
    [layerParts, kindParts, statusParts, sampleParts, qualityParts, townParts].forEach(function (parts) {
      bar.appendChild(el("span", { class: "field" }, parts));
    });
    bar.appendChild(searchInput);
    bar.appendChild(addButton);
    layerSelect.addEventListener("change", function () { state.layer = layerSelect.value; closePanel(); buildBar(); load(); });
    [kindSelect, statusSelect, sampleSelect, qualitySelect, townSelect].forEach(function (node) { node.addEventListener("change", render); });
    searchInput.addEventListener("input", render);
    addButton.addEventListener("click", startAdding);
  }
  function valuesOf(layer, name) {
    var prop = layer.properties.filter(function (p) { return p.name === name; })[0];
    return prop && prop.values ? prop.values : [];
  }

  // -- map ------------------------------------------------------------------------------------

  var map = L.map(mapBox, { zoomControl: true, attributionControl: false }).setView([36.80, 118.05], 12);
  var siteLayer = L.layerGroup().addTo(map);
  var addMarker = null;
  request("GET", "collections/towns/items?limit=1000").then(function (answer) {
    if (!answer.ok) return;
    L.geoJSON(answer.body, {
      style: function (feature) {
        var yours = !mine || mine.indexOf(feature.id) >= 0;
        return { color: "#555", weight: 1, fillColor: yours ? "#cfe3f5" : "#eeeeee", fillOpacity: 0.5 };
      },
      interactive: false
    }).addTo(map).bringToBack();
    var outline = L.geoJSON(answer.body);
    var yours = answer.body.features.filter(function (f) { return !mine || mine.indexOf(f.id) >= 0; });
    map.fitBounds((yours.length ? L.geoJSON({ type: "FeatureCollection", features: yours }) : outline).getBounds(), { padding: [10, 10] });
  });
  map.on("click", function (event) {
    if (state.adding) placeNew(event.latlng.lng, event.latlng.lat);
  });

  // -- loading and the table ---------------------------------------------------------------------

  // ``notice``: what was just done ("已保存"), kept in front of the count.
  function load(notice) {
    status.textContent = T.loading;
    return request("GET", "admin/api/sites?layer=" + encodeURIComponent(state.layer)).then(function (answer) {
      if (!answer.ok) { status.textContent = T.failed + problemText(answer); return; }
      state.sites = answer.body.features;
      render();
      if (notice) status.textContent = notice + " · " + status.textContent;
    });
  }

  function visible() {
    var name = (searchInput.value || "").trim();
    return state.sites.filter(function (site) {
      var p = site.properties;
      return (!kindSelect.value || p.kind === kindSelect.value) &&
        (!statusSelect.value || p.status === statusSelect.value) &&
        (!sampleSelect.value || String(!!p.sample) === sampleSelect.value) &&
        (!qualitySelect.value || p.position_quality === qualitySelect.value) &&
        (!townSelect.value || p.town_code === townSelect.value) &&
        (!name || String(p.name || "").indexOf(name) >= 0);
    });
  }

  function render() {
    var layer = layers[state.layer];
    var sites = visible();
    status.textContent = sites.length ? t("count", { n: sites.length }) : T.none;
    clear(table);
    var head = el("tr", {}, [T.name, T.kind, T.town, T.status, T.sample, T.quality, T.updated, ""].map(function (h) { return el("th", { text: h, scope: "col" }); }));
    table.appendChild(el("thead", {}, [head]));
    var body = el("tbody");
    siteLayer.clearLayers();
    state.markers = {};
    sites.forEach(function (site) {
      var p = site.properties;
      var editButton = el("button", { type: "button", class: "link", text: T.edit, "data-site": site.id });
      editButton.addEventListener("click", function () { openSite(site.id); });
      var row = el("tr", { "data-site": site.id }, [
        el("td", { text: p.name || "" }),
        el("td", { text: label(layer.kinds[p.kind]) || p.kind || "" }),
        el("td", { text: townName[p.town_code] || p.town_code || "" }),
        el("td", { text: valueLabel(layer, "status", p.status) }),
        el("td", { text: p.sample ? T.yes : T.no }),
        el("td", { text: valueLabel(layer, "position_quality", p.position_quality) }),
        el("td", { text: p.updated_at || "" }),
        el("td", {}, [editButton, el("a", { class: "history-link", href: ROOT + "admin/history?layer=" + encodeURIComponent(state.layer) + "&id=" + encodeURIComponent(site.id) + (LANG === "en" ? "&lang=en" : ""), text: LANG === "en" ? "History" : "历史" })])
      ]);
      if (state.selected === site.id) row.className = "selected";
      body.appendChild(row);
      var coords = site.geometry.coordinates;
      var marker = L.marker([coords[1], coords[0]], { draggable: false, title: p.name || site.id, keyboard: true });
      marker.on("click", function (event) {
        // While adding, a click anywhere (a marker too) places the new site.
        if (state.adding) placeNew(event.latlng.lng, event.latlng.lat);
        else openSite(site.id);
      });
      marker.on("dragend", function () { moveSite(site.id, marker); });
      marker.addTo(siteLayer);
      state.markers[site.id] = marker;
    });
    table.appendChild(body);
    if (state.selected && state.markers[state.selected]) state.markers[state.selected].dragging.enable();
  }
  function valueLabel(layer, name, value) {
    var found = valuesOf(layer, name).filter(function (v) { return v[0] === value; })[0];
    return found ? (LANG === "en" ? found[2] : found[1]) : (value === undefined || value === null ? "" : String(value));
  }
  function siteById(id) { return state.sites.filter(function (s) { return s.id === id; })[0]; }

  // -- adding -----------------------------------------------------------------------------------

  // The panel beside the map takes its width: Leaflet must measure again, or
  // a click lands where the old, wider map would have put it.
  function showPanel() {
    panel.hidden = false;
    map.invalidateSize();
  }

  function startAdding() {
    closePanel();
    state.adding = true;
    mapBox.classList.add("adding");
    showPanel();
    clear(panel);
    panel.appendChild(el("h2", { text: T.newSite }));
    panel.appendChild(el("p", { text: T.addHint, id: "add-hint" }));
    var input = el("input", { id: "address-input", type: "search", placeholder: T.addressPlaceholder, "aria-label": T.addressSearch });
    var find = el("button", { id: "address-find", type: "button", text: T.find });
    var candidates = el("ul", { id: "address-candidates", class: "candidates" });
    panel.appendChild(el("div", { class: "address" }, [input, find]));
    panel.appendChild(candidates);
    var cancel = el("button", { type: "button", text: T.cancel, id: "add-cancel" });
    cancel.addEventListener("click", closePanel);
    panel.appendChild(cancel);
    function lookUp() {
      var q = input.value.trim();
      if (!q) return;
      request("GET", "geocode?limit=5&q=" + encodeURIComponent(q)).then(function (answer) {
        clear(candidates);
        var found = answer.ok ? answer.body.features || [] : [];
        if (!found.length) { candidates.appendChild(el("li", { text: T.noCandidate })); return; }
        candidates.appendChild(el("li", { text: T.pickCandidate, class: "note" }));
        found.forEach(function (candidate) {
          var lon = candidate.geometry.coordinates[0];
          var lat = candidate.geometry.coordinates[1];
          var p = candidate.properties || {};
          // A named place stands in for the site's own position: a proxy; a
          // street address is located from the address.
          var quality = p.level === "place" ? "proxy" : "address";
          var text = (p.matched || q) + (p.town_code && townName[p.town_code] ? "（" + townName[p.town_code] + "）" : "");
          var pick = el("button", { type: "button", class: "link candidate", text: text });
          pick.addEventListener("click", function () { placeNew(lon, lat, quality, input.value.trim()); });
          candidates.appendChild(el("li", {}, [pick]));
        });
      });
    }
    find.addEventListener("click", lookUp);
    input.addEventListener("keydown", function (event) { if (event.key === "Enter") lookUp(); });
  }

  function placeNew(lon, lat, quality, address) {
    state.adding = false;
    mapBox.classList.remove("adding");
    if (addMarker) map.removeLayer(addMarker);
    addMarker = L.marker([lat, lon], { draggable: true }).addTo(map);
    var layer = layers[state.layer];
    var draft = {
      type: "Feature",
      id: null,
      geometry: { type: "Point", coordinates: [lon, lat] },
      properties: {
        kind: Object.keys(layer.kinds)[0],
        status: "open",
        sample: false,
        position_quality: quality || "approximate",
        address: address || "",
        eligible: valuesOf(layer, "eligible").map(function (v) { return v[0]; }),
        services: [],
        updated_at: DATA.today,
        source: (LANG === "en" ? "entered in the office console by " : "办公室后台录入：") + DATA.person.name
      }
    };
    addMarker.on("dragend", function () {
      var at = addMarker.getLatLng();
      draft.geometry.coordinates = [at.lng, at.lat];
      showTown(at.lng, at.lat);
    });
    openForm(draft, null);
  }

  // -- the form --------------------------------------------------------------------------------------

  //: Properties the console fills itself (the id, and the town the position decides).
  var AUTOMATIC = { id: true, town_code: true };

  function openSite(id) {
    var site = siteById(id);
    if (!site) return;
    state.selected = id;
    state.adding = false;
    if (addMarker) { map.removeLayer(addMarker); addMarker = null; }
    render();
    var marker = state.markers[id];
    if (marker) map.panTo(marker.getLatLng());
    openForm(JSON.parse(JSON.stringify(site)), site.etag);
  }

  function closePanel() {
    panel.hidden = true;
    clear(panel);
    map.invalidateSize();
    state.adding = false;
    mapBox.classList.remove("adding");
    if (addMarker) { map.removeLayer(addMarker); addMarker = null; }
    if (state.selected && state.markers[state.selected]) state.markers[state.selected].dragging.disable();
    state.selected = null;
  }

  function openForm(feature, etag) {
    var layer = layers[state.layer];
    showPanel();
    clear(panel);
    panel.appendChild(el("h2", { text: feature.id ? T.editSite : T.newSite }));
    var townLine = el("p", { id: "site-town", class: "town-line" });
    panel.appendChild(townLine);
    var coords = feature.geometry.coordinates;
    showTown(coords[0], coords[1]);
    var form = el("form", { id: "site-form", novalidate: "" });
    var inputs = {};
    layer.properties.forEach(function (prop) {
      if (AUTOMATIC[prop.name]) return;
      var id = "field-" + prop.name;
      var value = feature.properties[prop.name];
      var control;
      if (prop.type === "kind" || prop.type === "enum") {
        control = el("select", { id: id, name: prop.name });
        var choices = prop.type === "kind" ? Object.keys(layer.kinds).map(function (k) { return [k, layer.kinds[k].zh, layer.kinds[k].en]; }) : prop.values;
        if (!prop.required) control.appendChild(option("", ""));
        choices.forEach(function (v) { control.appendChild(option(v[0], LANG === "en" ? v[2] : v[1], v[0] === value)); });
      } else if (prop.type === "list") {
        control = el("fieldset", { id: id, class: "choices" });
        prop.values.forEach(function (v) {
          var box = el("input", { type: "checkbox", value: v[0], id: id + "-" + v[0] });
          box.checked = (value || []).indexOf(v[0]) >= 0;
          control.appendChild(el("label", { class: "choice" }, [box, document.createTextNode(LANG === "en" ? v[2] : v[1])]));
        });
      } else if (prop.type === "boolean") {
        control = el("input", { id: id, type: "checkbox" });
        control.checked = !!value;
      } else if (prop.type === "integer") {
        control = el("input", { id: id, type: "number", step: "1" });
        control.value = value === null || value === undefined ? "" : String(value);
      } else if (prop.type === "date") {
        control = el("input", { id: id, type: "date" });
        control.value = value || "";
      } else {
        control = el(prop.type === "text" ? "textarea" : "input", { id: id, type: prop.type === "phone" ? "tel" : "text" });
        control.value = value === null || value === undefined ? "" : String(value);
        if (prop.type === "opening_hours") control.setAttribute("placeholder", "周一至周五 9:00-17:00");
      }
      inputs[prop.name] = control;
      var error = el("span", { class: "field-error", id: id + "-error", role: "alert" });
      var caption = label(prop) + (prop.required ? " *" : "");
      form.appendChild(el("div", { class: "form-row", "data-field": prop.name }, [
        el(prop.type === "list" ? "span" : "label", prop.type === "list" ? { text: caption, class: "label" } : { for: id, text: caption }),
        control, error
      ]));
    });
    var message = el("p", { id: "form-message", class: "form-message", role: "alert" });
    var save = el("button", { type: "submit", class: "primary", id: "site-save", text: T.save });
    var cancel = el("button", { type: "button", id: "site-cancel", text: T.cancel });
    cancel.addEventListener("click", function () { closePanel(); render(); });
    form.appendChild(message);
    form.appendChild(el("div", { class: "form-actions" }, [save, cancel]));
    panel.appendChild(form);

    function collect() {
      var props = Object.assign({}, feature.properties);
      layer.properties.forEach(function (prop) {
        var control = inputs[prop.name];
        if (!control) return;
        if (prop.type === "list") {
          props[prop.name] = Array.prototype.filter.call(control.querySelectorAll("input"), function (box) { return box.checked; }).map(function (box) { return box.value; });
        } else if (prop.type === "boolean") {
          props[prop.name] = control.checked;
        } else if (prop.type === "integer") {
          props[prop.name] = control.value === "" ? null : Number(control.value);
        } else {
          props[prop.name] = control.value === "" ? null : control.value;
        }
      });
      var at = addMarker && !feature.id ? addMarker.getLatLng() : null;
      var geometry = at ? { type: "Point", coordinates: [at.lng, at.lat] } : feature.geometry;
      return { type: "Feature", id: feature.id || undefined, geometry: geometry, properties: props };
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = collect();
      // A new site's id is made by the service from its name and position.
      if (body.id) body.properties.id = body.id;
      else delete body.properties.id;
      delete body.properties.town_code; // the position decides it
      clearErrors(form, message);
      var answer = feature.id
        ? request("PUT", EDIT + "collections/" + state.layer + "/items/" + encodeURIComponent(feature.id), body, { "If-Match": etag })
        : request("POST", EDIT + "collections/" + state.layer + "/items", body);
      answer.then(function (result) {
        if (result.ok) {
          closePanel();
          load(T.saved);
        } else if (result.status === 412) {
          showConflict(feature, body);
        } else {
          showErrors(form, message, result);
        }
      });
    });
  }

  function clearErrors(form, message) {
    message.textContent = "";
    Array.prototype.forEach.call(form.querySelectorAll(".field-error"), function (node) { node.textContent = ""; });
    Array.prototype.forEach.call(form.querySelectorAll(".invalid"), function (node) { node.classList.remove("invalid"); });
  }

  function showErrors(form, message, result) {
    var problems = (result.body && (result.body.problems || result.body.errors)) || [];
    var shown = 0;
    problems.forEach(function (problem) {
      var row = form.querySelector('[data-field="' + CSS.escape(problem.field) + '"]');
      if (!row) return;
      row.classList.add("invalid");
      row.querySelector(".field-error").textContent = (LANG === "en" ? problem.message : (problem.message_zh || problem.message));
      shown += 1;
    });
    if (result.status === 403) message.textContent = T.forbidden + " " + problemText(result);
    else message.textContent = shown ? T.fix : T.failed + problemText(result);
  }

  // -- the town a position falls in --------------------------------------------------------------------

  function showTown(lon, lat) {
    var line = document.getElementById("site-town");
    return request("GET", "reverse?lon=" + lon + "&lat=" + lat).then(function (answer) {
      var code = answer.ok && answer.body && answer.body.town ? answer.body.town.code : null;
      var name = code ? (townName[code] || answer.body.town.name) : null;
      if (line) {
        line.textContent = name ? t("townHere", { town: name }) : T.outsideDistrict;
        line.classList.toggle("warning", !code || (mine !== null && mine.indexOf(code) < 0));
        if (code && mine !== null && mine.indexOf(code) < 0) line.textContent = t("moveOutside", { town: name });
      }
      return code;
    });
  }

  // -- moving by dragging -----------------------------------------------------------------------------------

  function moveSite(id, marker) {
    var site = siteById(id);
    var at = marker.getLatLng();
    var back = function () { var c = site.geometry.coordinates; marker.setLatLng([c[1], c[0]]); };
    showTown(at.lng, at.lat).then(function (code) {
      var name = code ? (townName[code] || code) : null;
      if (!code) { status.textContent = T.outsideDistrict; back(); return; }
      if (mine !== null && mine.indexOf(code) < 0) { status.textContent = t("moveOutside", { town: name }); back(); return; }
      if (!window.confirm(t("moveTo", { name: site.properties.name, town: name }))) { back(); return; }
      var body = JSON.parse(JSON.stringify(site));
      delete body.etag;
      body.geometry = { type: "Point", coordinates: [at.lng, at.lat] };
      delete body.properties.town_code;
      request("PUT", EDIT + "collections/" + state.layer + "/items/" + encodeURIComponent(id), body, { "If-Match": site.etag }).then(function (result) {
        if (result.ok) { state.selected = null; load(T.moved); }
        else if (result.status === 412) { back(); showConflict(site, body); }
        else { back(); status.textContent = T.failed + problemText(result); }
      });
    });
  }

  // -- "someone changed this site" ------------------------------------------------------------------------------

  function showConflict(before, yours) {
    var layer = layers[state.layer];
    request("GET", "collections/" + state.layer + "/items/" + encodeURIComponent(before.id)).then(function (current) {
      showPanel();
      clear(panel);
      panel.appendChild(el("h2", { text: T.conflictTitle, id: "conflict-title" }));
      if (current.status === 404) { panel.appendChild(el("p", { text: T.deletedMeanwhile })); return; }
      var theirs = current.body;
      panel.appendChild(el("p", { text: T.conflictText }));
      var grid = el("table", { id: "conflict-table", class: "conflict" });
      grid.appendChild(el("tr", {}, [T.field, T.theirs, T.yours].map(function (h) { return el("th", { text: h }); })));
      layer.properties.forEach(function (prop) {
        var a = show(theirs.properties[prop.name]);
        var b = show(yours.properties[prop.name]);
        if (prop.name === "town_code" || a === b) return;
        grid.appendChild(el("tr", { class: "differs", "data-field": prop.name }, [el("th", { text: label(prop) }), el("td", { text: a }), el("td", { text: b })]));
      });
      var theirsAt = JSON.stringify(theirs.geometry.coordinates), yoursAt = JSON.stringify(yours.geometry.coordinates);
      if (theirsAt !== yoursAt) grid.appendChild(el("tr", { class: "differs", "data-field": "geometry" }, [el("th", { text: T.position }), el("td", { text: theirsAt }), el("td", { text: yoursAt })]));
      panel.appendChild(grid);
      var keepTheirs = el("button", { type: "button", id: "keep-theirs", text: T.keepTheirs });
      var keepMine = el("button", { type: "button", id: "keep-mine", class: "primary", text: T.keepMine });
      keepTheirs.addEventListener("click", function () { closePanel(); load(); });
      keepMine.addEventListener("click", function () {
        request("PUT", EDIT + "collections/" + state.layer + "/items/" + encodeURIComponent(before.id), yours, { "If-Match": current.etag }).then(function (result) {
          if (result.ok) { closePanel(); load(T.saved); }
          else status.textContent = T.failed + problemText(result);
        });
      });
      panel.appendChild(el("div", { class: "form-actions" }, [keepMine, keepTheirs]));
    });
  }
  function show(value) {
    if (value === null || value === undefined) return "";
    if (Array.isArray(value)) return value.join(", ");
    return String(value);
  }

  buildBar();
  load();
})();
