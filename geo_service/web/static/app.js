/* Zhangdian support-resource web map: the page script.
 *
 * Started by the folium page with the Leaflet map, a config (labels from the
 * layer catalog, looks from maps/style.toml) and, for the standalone file,
 * the embedded data. Served, it fetches every layer as GeoJSON from the API
 * and asks /nearest; a layer with more features than the style's
 * vector_tiles_above is drawn from vector tiles instead (vectortiles.js).
 * Standalone, it uses the embedded layers and computes nearest in the page. No request ever leaves the service (or the file),
 * except map tiles when tiles are configured.
 */
(function () {
  "use strict";

  var TEXT = {
    zh: {
      language: "EN",
      languageTitle: "Switch to English",
      sample: "本图 {n} 个地点中 {s} 个为示例数据（标“示例”），仅供演示，不代表真实服务点。",
      sampleAll: "本图 {n} 个地点均为示例数据（标“示例”），仅供演示，不代表真实服务点。",
      sampleClose: "关闭示例数据说明",
      sampleShow: "显示示例数据说明",
      nearestTab: "最近服务",
      layersTab: "图层与图例",
      collapse: "收起",
      expand: "展开",
      search: "搜索地点",
      searchPlaceholder: "输入名称或类型，如：银行、驿站",
      noMatch: "没有找到名称相符的地点",
      locate: "定位我",
      pickHint: "点击地图选择位置，或点“定位我”。",
      layer: "图层",
      allLayers: "全部图层",
      kind: "类型",
      allKinds: "全部类型",
      openNow: "只看正在开放",
      openNowBeyond: "只看正在开放（本离线文件的开放时间只算到 {d}，请重新导出）",
      beyondHorizon: "（离线文件只算到 {d}）",
      here: "您选择的位置",
      loading: "正在查询……",
      noResult: "附近没有符合条件的地点",
      failed: "查询失败：",
      located: "已定位",
      locateFailed: "无法获取位置：",
      insecure: "本页是普通 HTTP 连接，浏览器只在 HTTPS 安全连接下提供您的位置。请直接点击地图上您所在的地方。",
      geoDenied: "您没有允许本页使用位置。可在浏览器设置里允许，或直接点击地图上您所在的地方。",
      geoUnavailable: "暂时无法确定您的位置。请直接点击地图上您所在的地方。",
      geoTimeout: "获取位置超时。请再点一次“定位我”，或直接点击地图上您所在的地方。",
      geoMissing: "这个浏览器不能提供位置。请直接点击地图上您所在的地方。",
      elder: "长辈模式",
      elderTitle: "大字、高对比、大按钮",
      sheet: "服务面板",
      sheetGrip: "面板高度",
      sheetStates: { peek: "已收起", half: "半屏", full: "全屏" },
      sheetHelp: "点按切换，上下方向键调整",
      zoomIn: "放大地图",
      zoomOut: "缩小地图",
      closePopup: "关闭",
      map: "地图：点击选择位置",
      cluster: "{name}，按 Enter 放大",
      walk: "步行约 {m} 分钟",
      walkNote: "步行时间按直线距离 × {d} ÷ {s} 公里/小时估算。",
      offlineNote: "离线文件：距离为球面直线距离，在本页计算。",
      open: "开放中",
      closed: "已关闭",
      unknown: "开放时间未知",
      hoursAsWritten: "开放时间（原文）",
      opensToday: "今天 {t} 开放",
      opensTomorrow: "明天 {t} 开放",
      opensOn: "{d} {t} 开放",
      weekdays: ["周日", "周一", "周二", "周三", "周四", "周五", "周六"],
      date: "{m}月{d}日",
      listSeparator: "、",
      district: "区界",
      towns: "镇街界",
      navigate: "导航",
      amap: "高德地图",
      baidu: "百度地图",
      tencent: "腾讯地图",
      sampleTag: "示例",
      loadFailed: "图层加载失败：",
      sites: "个",
      clusterSites: "{n} 个地点",
      clusterParts: "：",
      thinned: "此处共有 {n} 个同类地点，这里只显示其中一个。放大地图可逐一查看。",
      zoomToSites: "放大查看这 {n} 个地点"
    },
    en: {
      language: "中文",
      languageTitle: "切换到中文",
      sample: "Sample data: {s} of the {n} sites on this map are examples (tagged “sample”), for demonstration only; they are not real service points.",
      sampleAll: "Sample data: all {n} sites on this map are examples (tagged “sample”), for demonstration only; they are not real service points.",
      sampleClose: "Close the sample data notice",
      sampleShow: "Show the sample data notice",
      nearestTab: "Nearest",
      layersTab: "Layers & legend",
      collapse: "Hide",
      expand: "Show",
      search: "Search places",
      searchPlaceholder: "A name or a kind, e.g. bank, 银行",
      noMatch: "No place with that name",
      locate: "Locate me",
      pickHint: "Tap the map to choose a point, or use “Locate me”.",
      layer: "Layer",
      allLayers: "All layers",
      kind: "Kind",
      allKinds: "All kinds",
      openNow: "Open now only",
      openNowBeyond: "Open now only (this offline file knows opening hours only until {d}; export it again)",
      beyondHorizon: " (the offline file knows hours only until {d})",
      here: "Your chosen point",
      loading: "Searching…",
      noResult: "No matching place nearby",
      failed: "Search failed: ",
      located: "Located",
      locateFailed: "Could not get your position: ",
      insecure: "This page uses plain HTTP, and browsers give your position only over HTTPS. Tap the place where you are on the map instead.",
      geoDenied: "This page may not use your position. Allow it in your browser's settings, or tap the place where you are on the map.",
      geoUnavailable: "Your position is not available right now. Tap the place where you are on the map.",
      geoTimeout: "Finding your position took too long. Try “Locate me” again, or tap the place where you are on the map.",
      geoMissing: "This browser cannot give your position. Tap the place where you are on the map.",
      elder: "Large text",
      elderTitle: "Larger text, higher contrast, bigger buttons",
      sheet: "Services panel",
      sheetGrip: "Panel height",
      sheetStates: { peek: "folded", half: "half screen", full: "full screen" },
      sheetHelp: "tap to change, arrow keys to resize",
      zoomIn: "Zoom in",
      zoomOut: "Zoom out",
      closePopup: "Close",
      map: "Map: tap to choose a point",
      cluster: "{name}; Enter zooms in",
      walk: "about {m} min walk",
      walkNote: "Walking time: straight-line distance × {d} ÷ {s} km/h.",
      offlineNote: "Offline file: straight-line distances on a sphere, computed in this page.",
      open: "Open",
      closed: "Closed",
      unknown: "Hours unknown",
      hoursAsWritten: "Opening hours (as written)",
      opensToday: "opens today {t}",
      opensTomorrow: "opens tomorrow {t}",
      opensOn: "opens {d} {t}",
      weekdays: ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"],
      date: "{d} {M}",
      months: ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
      listSeparator: ", ",
      district: "District boundary",
      towns: "Town boundaries",
      navigate: "Navigate",
      amap: "Amap",
      baidu: "Baidu Maps",
      tencent: "Tencent Maps",
      sampleTag: "sample",
      loadFailed: "Could not load layer: ",
      sites: "",
      clusterSites: "{n} places",
      clusterParts: ": ",
      thinned: "{n} sites of this kind are here; only one of them is shown. Zoom in to see each.",
      zoomToSites: "Zoom in to these {n} sites"
    }
  };

  // -- coordinate systems: the same published formulas as geo_service/crs.py --
  var GCJ_A = 6378245.0;
  var GCJ_EE = 0.00669342162296594323;
  var BD_PI = Math.PI * 3000.0 / 180.0;

  function insideChina(lon, lat) {
    return lon >= 72.004 && lon <= 137.8347 && lat >= 0.8293 && lat <= 55.8271;
  }

  function wgs84ToGcj02(lon, lat) {
    if (!insideChina(lon, lat)) return [lon, lat];
    var x = lon - 105.0, y = lat - 35.0, PI = Math.PI;
    var dLat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
    dLat += (20.0 * Math.sin(6.0 * x * PI) + 20.0 * Math.sin(2.0 * x * PI)) * 2.0 / 3.0;
    dLat += (20.0 * Math.sin(y * PI) + 40.0 * Math.sin(y / 3.0 * PI)) * 2.0 / 3.0;
    dLat += (160.0 * Math.sin(y / 12.0 * PI) + 320.0 * Math.sin(y * PI / 30.0)) * 2.0 / 3.0;
    var dLon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
    dLon += (20.0 * Math.sin(6.0 * x * PI) + 20.0 * Math.sin(2.0 * x * PI)) * 2.0 / 3.0;
    dLon += (20.0 * Math.sin(x * PI) + 40.0 * Math.sin(x / 3.0 * PI)) * 2.0 / 3.0;
    dLon += (150.0 * Math.sin(x / 12.0 * PI) + 300.0 * Math.sin(x / 30.0 * PI)) * 2.0 / 3.0;
    var radLat = lat / 180.0 * PI;
    var magic = 1.0 - GCJ_EE * Math.pow(Math.sin(radLat), 2);
    var sqrtMagic = Math.sqrt(magic);
    dLat = (dLat * 180.0) / ((GCJ_A * (1.0 - GCJ_EE)) / (magic * sqrtMagic) * PI);
    dLon = (dLon * 180.0) / (GCJ_A / sqrtMagic * Math.cos(radLat) * PI);
    return [lon + dLon, lat + dLat];
  }

  function gcj02ToBd09(lon, lat) {
    var z = Math.sqrt(lon * lon + lat * lat) + 0.00002 * Math.sin(lat * BD_PI);
    var theta = Math.atan2(lat, lon) + 0.000003 * Math.cos(lon * BD_PI);
    return [z * Math.cos(theta) + 0.0065, z * Math.sin(theta) + 0.006];
  }

  // Straight-line distance on a sphere, for the offline file only.
  function sphericalMetres(lat1, lon1, lat2, lon2) {
    var r = Math.PI / 180, R = 6371008.8;
    var a = Math.pow(Math.sin((lat2 - lat1) * r / 2), 2) +
      Math.cos(lat1 * r) * Math.cos(lat2 * r) * Math.pow(Math.sin((lon2 - lon1) * r / 2), 2);
    return 2 * R * Math.asin(Math.sqrt(a));
  }

  // Every text from the store or a request reaches the page through el():
  // as a text node or an attribute value, never parsed as markup, and every
  // link through safeHref(). Popups, tooltips and icons are given the
  // elements el() builds, never HTML strings (tests/test_hostile_pages.py
  // keeps it so).
  var LINK_SCHEMES = { "https:": true, "http:": true, "tel:": true };

  // A link built from data goes out only with a scheme known to be harmless;
  // anything else (javascript:, data:, ...) becomes no link at all.
  function safeHref(value) {
    var url;
    try { url = new URL(String(value), document.baseURI); } catch (e) { return null; }
    return LINK_SCHEMES[url.protocol] ? url.href : null;
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value == null) return;
      if (key === "text") node.textContent = value;
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
      else if (key === "href") { value = safeHref(value); if (value) node.setAttribute("href", value); }
      else node.setAttribute(key, value);
    });
    (children || []).forEach(function (child) {
      if (child == null || child === "") return;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  function folded(text) {
    text = String(text).trim();
    return (text.normalize ? text.normalize("NFKC") : text).toLowerCase();
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function formatDistance(metres) {
    return metres < 1000 ? Math.round(metres) + " m" : (metres / 1000).toFixed(1) + " km";
  }

  // Whether the resident closed the sample notice on this device.
  function storedSampleClosed() {
    try {
      return window.localStorage.getItem("gs-sample-dismissed") === "1";
    } catch (e) {
      return false;
    }
  }

  // Storage may be blocked (privacy settings) or hold anything: never fatal.
  function storedLanguage() {
    try {
      var lang = window.localStorage.getItem("gs-lang");
      return lang === "en" ? "en" : "zh";
    } catch (e) {
      return "zh";
    }
  }

  // The elder mode is remembered the same way, and off when storage fails.
  function storedElder() {
    try {
      return window.localStorage.getItem("gs-elder") === "1";
    } catch (e) {
      return false;
    }
  }

  var SHEET_STATES = ["peek", "half", "full"];
  // A gazetteer place this close to a site's marker is not labelled.
  var GAZETTEER_CLEAR_M = 60;

  function App(map, config, embedded) {
    this.map = map;
    this.config = config;
    this.embedded = embedded;
    this.lang = storedLanguage();
    this.elder = storedElder();
    this.sheet = null;      // peek | half | full (on a desktop: folded or open)
    this.popupOpener = null; // where focus goes back when a popup closes
    this.layers = {};       // layer id -> {config, markers: [], visible, hiddenKinds,
                            //   tiled, count, kindCounts, tiles} (the last four for tiled layers)
    this.sites = [];        // every facility feature, with its layer and marker
    this.openState = {};    // "layer/id" -> open | closed | unknown
    this.opens = Object.create(null); // "layer/id" -> when a closed site opens next, local "YYYY-MM-DDTHH:MM"
    this.statesAt = null;   // the service's local time the states are for
    this.hoursText = Object.create(null); // opening_hours value -> {zh, en} as a resident reads it
    this.point = null;      // L.LatLng chosen by the resident
    this.sampleShown = false;
    this.sampleClosed = storedSampleClosed();
    this.nearestLayer = L.layerGroup().addTo(map);
    this.ready = null;
  }

  App.prototype.t = function (key, values) {
    var text = TEXT[this.lang][key];
    Object.keys(values || {}).forEach(function (name) { text = text.replace("{" + name + "}", values[name]); });
    return text;
  };

  App.prototype.label = function (entry) {
    return entry ? entry[this.lang] || entry.zh : "";
  };

  App.prototype.kindConfig = function (layerId, kindId) {
    var layer = this.layers[layerId].config;
    for (var i = 0; i < layer.kinds.length; i++) if (layer.kinds[i].id === kindId) return layer.kinds[i];
    return { id: kindId, zh: kindId, en: kindId, colour: layer.colour, glyph: layer.glyph };
  };

  App.prototype.start = function () {
    var self = this;
    // Clustering needs a zoom range; with no tile layer the map has none of its own.
    this.map.setMinZoom(8);
    this.map.setMaxZoom(19);
    this.zoomControl = L.control.zoom({ position: "topright", zoomInTitle: this.t("zoomIn"), zoomOutTitle: this.t("zoomOut") }).addTo(this.map);
    this.setAttributionPrefix(this.config.attributionPrefix);
    // Metres and kilometres only: residents do not read miles or feet.
    L.control.scale({ imperial: false }).addTo(this.map);
    if (this.config.tiles === "none") {
      this.map.getContainer().style.background = this.config.boundaries.water;
    }
    // Dots of tiled layers go above the boundaries (the district is filled
    // opaque when it is the basemap) and below markers and popups. Clicks
    // pass through: the map hit-tests the dots itself.
    var pointsPane = this.map.createPane("gsPoints");
    pointsPane.style.zIndex = 450;
    pointsPane.style.pointerEvents = "none";
    this.config.layers.forEach(function (layer) {
      self.layers[layer.id] = { config: layer, markers: [], visible: true, hiddenKinds: {}, tiled: false };
    });
    // One clustering for every layer's markers: clusters of different layers
    // would otherwise stack on each other. The icon shows the mix.
    this.cluster = L.markerClusterGroup({
      showCoverageOnHover: false,
      // Icons are 44 px squares: points further apart than their diagonal never touch.
      maxClusterRadius: 64,
      chunkedLoading: true,
      iconCreateFunction: function (cluster) { return self.clusterIcon(cluster); }
    });
    // The plugin groups a site with a cluster by its distance to the
    // cluster's first point, but draws the icon at the sites' average, which
    // can land it on a neighbouring icon. Drawn at the point it groups by,
    // every icon keeps the clustering distance from every other.
    this.cluster._markerCluster = this.cluster._markerCluster.extend({
      _recalculateBounds: function () {
        L.MarkerCluster.prototype._recalculateBounds.call(this);
        if (this._cLatLng) this._latlng = this._cLatLng;
      }
    });
    this.cluster.addTo(this.map);
    this.cluster.on("animationend", function () { self.placeTownLabels(); });
    this.map.on("moveend", function () { self.placeTownLabels(); });
    // Every popup makes room for itself when it opens (see makeRoomForPopup).
    this.Popup = L.Popup.extend({
      onAdd: function (map) {
        self.makeRoomForPopup(this);
        L.Popup.prototype.onAdd.call(this, map);
      }
    });
    this.buildUi();
    this.watchPopups();
    this.map.on("layeradd", function (event) { self.nameMarker(event.layer); });
    window.addEventListener("resize", function () { self.layoutTop(); });
    this.map.on("click", function (event) {
      var hit = self.tiledPointAt(event.latlng);
      if (hit) self.openTiledPopup(hit.layer, hit.properties.id, hit.latlng, hit.properties.count);
      else self.setPoint(event.latlng, false);
    });
    this.map.on("mousemove", function (event) {
      self.map.getContainer().style.cursor = self.tiledPointAt(event.latlng) ? "pointer" : "";
    });
    this.ready = this.load().then(function () {
      document.body.setAttribute("data-gs-ready", "1");
    }, function (error) {
      console.error(error);
      self.showError(self.t("loadFailed") + (error && error.message || error));
      document.body.setAttribute("data-gs-ready", "error");
    });
    return this;
  };

  // The style's prefix before the attribution, as plain text: Leaflet's
  // setPrefix takes HTML, so every character that means something in HTML
  // is handed over as a character reference and shows as typed; "" shows none.
  App.prototype.setAttributionPrefix = function (text) {
    var control = this.map.attributionControl;
    if (!control) return;
    control.setPrefix(text ? String(text).replace(/[&<>"']/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; }) : false);
  };

  // -- data ------------------------------------------------------------------

  App.prototype.fetchJson = function (url) {
    return fetch(url, { headers: { Accept: "application/geo+json, application/json" } }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) throw new Error(body.detail || body.title || response.statusText);
        return body;
      });
    });
  };

  App.prototype.fetchLayer = function (layerId) {
    // Follows the OGC "next" links, so a layer larger than one page still loads whole.
    var self = this, features = [];
    function page(url) {
      return self.fetchJson(url).then(function (body) {
        features = features.concat(body.features);
        var next = (body.links || []).filter(function (link) { return link.rel === "next"; })[0];
        // Only the query of the "next" link is used: its absolute URL may name
        // another scheme or host when the service sits behind a proxy.
        return next
          ? page("collections/" + layerId + "/items" + new URL(next.href, document.baseURI).search)
          : { type: "FeatureCollection", features: features };
      });
    }
    return page("collections/" + layerId + "/items?limit=10000&crs=" + this.config.crs);
  };

  App.prototype.load = function () {
    var self = this;
    var ids = ["district", "towns"].concat(this.config.layers.map(function (l) { return l.id; }));
    var planned = this.embedded ? Promise.resolve() : this.chooseTiled();
    var got = planned.then(function () {
      if (self.embedded) return ids.map(function (id) { return self.embedded.layers[id] || { features: [] }; });
      return Promise.all(ids.map(function (id) {
        return self.layers[id] && self.layers[id].tiled ? null : self.fetchLayer(id);
      }));
    });
    // Legend counts of tiled layers come beside the tiles, not before them:
    // counting a kind among millions of sites takes the store a while.
    var counted = planned.then(function () {
      return Promise.all(self.config.layers.filter(function (l) { return self.layers[l.id].tiled; })
        .map(function (l) { return self.fetchTiledInfo(l.id); }));
    });
    // Open-now states are asked once the tiled layers are known (they are left
    // out), and the map does not wait for them: the service's first answer
    // after a start builds its site index, seconds for a large store.
    var states = planned.then(function () {
      if (self.embedded) return self.offlineTimes();
      return self.fetchOpenState();
    }).then(function (times) { self.keepTimes(times); });
    var drawn = got.then(function (collections) {
      self.drawBoundaries(collections[0], collections[1]);
      // Before the sites: clusters are made for the view they are first drawn in.
      if (self.isPhone() && !/town=\d{9}/.test(window.location.hash)) self.showDistrict(collections[0]);
      self.config.layers.forEach(function (layer, i) {
        if (self.layers[layer.id].tiled) self.addTiles(layer.id);
        else self.addSites(layer.id, collections[i + 2]);
      });
      self.renderLegend();
      self.updateSampleNotice();
      self.placeTownLabels();
      // A printed map's QR code opens the page at its town: #town=370303002
      var town = /town=(\d{9})/.exec(window.location.hash);
      if (town && self.townLayers[town[1]]) self.map.fitBounds(self.townLayers[town[1]].getBounds());
      // Open-now badges follow the clock while the page stays open.
      if (self.embedded) {
        window.setInterval(function () { self.keepTimes(self.offlineTimes()); }, 60000);
      } else {
        window.setInterval(function () {
          self.fetchOpenState().then(function (times) { self.keepTimes(times); }, function () { /* keep the last known */ });
        }, 300000);
      }
    });
    // After the sites: a gazetteer place with a site's marker on it is left
    // unlabelled (the marker names it; a label would lie under it).
    var context = drawn.then(function () { return self.drawContext(); });
    var legend = Promise.all([drawn, counted]).then(function () {
      self.renderLegend();
      self.updateSampleNotice();
    });
    return Promise.all([drawn, states, legend, context]);
  };

  // A phone opens on the whole district, in the part of the map the title
  // bar and the folded sheet leave free (the style's zoom suits a desktop).
  App.prototype.showDistrict = function (district) {
    if (!district.features || !district.features.length) return;
    // Not animated: a fit asked during a zoom animation (a resident's first
    // tap, an answer) would be dropped by Leaflet.
    var options = this.viewPadding();
    options.animate = false;
    this.map.fitBounds(L.geoJSON(district).getBounds(), options);
  };

  // Which layers are too large for GeoJSON: decided here from the live
  // feature counts (the page itself is built once, while data keeps growing).
  // The offline file never gets here: it has no server to ask for tiles.
  App.prototype.chooseTiled = function () {
    var self = this, above = this.config.vectorTilesAbove;
    return this.fetchJson("collections?f=json").then(function (body) {
      body.collections.forEach(function (collection) {
        var entry = self.layers[collection.id];
        if (!entry || !(collection.numberOfFeatures > above)) return;
        entry.tiled = true;
        entry.count = collection.numberOfFeatures;
        entry.extent = collection.extent && collection.extent.spatial.bbox[0];
      });
    });
  };

  // What the legend and the sample notice need of a tiled layer, without its
  // features: a count per kind and whether any feature is sample data
  // (numberMatched of one-feature pages; the tiles carry neither).
  App.prototype.fetchTiledInfo = function (layerId) {
    var self = this, base = "collections/" + layerId + "/items?limit=1&";
    var kinds = this.layers[layerId].config.kinds;
    return Promise.all(kinds.map(function (kind) {
      return self.fetchJson(base + "kind=" + encodeURIComponent(kind.id)).then(function (b) { return b.numberMatched; });
    }).concat([this.fetchJson(base + "sample=true").then(function (b) { return b.numberMatched; })])).then(function (numbers) {
      var entry = self.layers[layerId];
      entry.kindCounts = {};
      kinds.forEach(function (kind, i) { entry.kindCounts[kind.id] = numbers[i]; });
      entry.sampleCount = numbers[kinds.length];
      if (numbers[kinds.length] > 0) self.sampleShown = true;
    });
  };

  // States of the sites drawn as markers; a tiled layer's sites are asked one
  // at a time, when a popup opens (the layer may hold millions).
  App.prototype.fetchOpenState = function () {
    var self = this, plain = this.config.layers.filter(function (l) { return !self.layers[l.id].tiled; });
    if (!plain.length) return Promise.resolve({});
    var query = plain.length < this.config.layers.length
      ? "?layers=" + plain.map(function (l) { return encodeURIComponent(l.id); }).join(",") : "";
    return this.fetchJson("open-state" + query);
  };

  // An /open-state answer (or the standalone file's states): the sites'
  // states, when closed ones open next and the hours as residents read them.
  // ``merge`` adds one site's answer to what is known (a tiled site's popup).
  App.prototype.keepTimes = function (times, merge) {
    var self = this;
    times = times || {};
    if (!merge) { this.openState = {}; this.opens = Object.create(null); }
    Object.keys(times.sites || {}).forEach(function (key) {
      self.openState[key] = times.sites[key];
      delete self.opens[key];
    });
    Object.keys(times.opens || {}).forEach(function (key) { self.opens[key] = times.opens[key]; });
    Object.keys(times.hours || {}).forEach(function (value) { self.hoursText[value] = times.hours[value]; });
    if (times.at) this.statesAt = times.at;
  };

  // -- open now in the offline file --------------------------------------------

  // Wall-clock minutes (minutes since 1970-01-01 00:00 as written locally,
  // not elapsed) of a local "YYYY-MM-DDTHH:MM".
  function wallMinutes(text) {
    var m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(text || "");
    return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]) / 60000 : null;
  }

  function wallText(minutes) {
    return new Date(minutes * 60000).toISOString().slice(0, 16);
  }

  // The browser's clock as wall-clock minutes in the service's time zone
  // (Asia/Shanghai), wherever the browser is set to be.
  var SHANGHAI = (function () {
    try {
      return new Intl.DateTimeFormat("en-US", { timeZone: "Asia/Shanghai", hourCycle: "h23", year: "numeric",
        month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
    } catch (e) {
      return null;
    }
  })();

  function shanghaiNowMinutes() {
    var now = Date.now();
    if (!SHANGHAI) return Math.floor(now / 60000) + 480; // UTC+8, no daylight saving since 1991
    var parts = {};
    SHANGHAI.formatToParts(new Date(now)).forEach(function (p) { parts[p.type] = p.value; });
    return Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour % 24, +parts.minute) / 60000;
  }

  // What the offline file says about time now, in the shape of an
  // /open-state answer: each site's state and when a closed one opens next
  // (within a week), from the states the export worked out for each hours
  // value. Outside the exported stretch every state is unknown, and the
  // page says why.
  App.prototype.offlineTimes = function () {
    var data = this.embedded, horizon = data.horizon || {}, changes = data.hoursChanges || {};
    var start = wallMinutes(horizon.from), end = wallMinutes(horizon.until), now = shanghaiNowMinutes();
    var at = now - start, inside = start != null && at >= 0 && now < end;
    var sites = {}, opens = {};
    this.offlineUntil = inside || end == null ? null : horizon.until.slice(0, 10);
    var features = [];
    this.config.layers.forEach(function (layer) {
      ((data.layers[layer.id] || {}).features || []).forEach(function (f) { features.push([layer.id, f]); });
    });
    features.forEach(function (pair) {
      var key = pair[0] + "/" + pair[1].id, value = pair[1].properties.opening_hours;
      var list = typeof value === "string" ? changes[value] : null;
      if (!inside || !list || !list.length) { sites[key] = "unknown"; return; }
      var i = 0;
      while (i + 1 < list.length && list[i + 1][0] <= at) i += 1;
      sites[key] = list[i][1];
      if (list[i][1] !== "closed") return;
      for (var j = i + 1; j < list.length; j++) {
        if (list[j][1] === "unknown" || list[j][0] - at > 7 * 1440) break;
        if (list[j][1] === "open") { opens[key] = wallText(start + list[j][0]); break; }
      }
    });
    if (this.ui) {
      this.ui.openNow.disabled = !inside;
      if (!inside) this.ui.openNow.checked = false;
      this.ui.openNowText.textContent = this.openNowLabel();
    }
    return { sites: sites, opens: opens, hours: data.hours, at: wallText(now) };
  };

  App.prototype.openNowLabel = function () {
    return this.embedded && this.offlineUntil ? this.t("openNowBeyond", { d: this.offlineUntil }) : this.t("openNow");
  };

  App.prototype.drawBoundaries = function (district, towns) {
    var colours = this.config.boundaries, noTiles = this.config.tiles === "none";
    L.geoJSON(district, {
      interactive: false,
      style: {
        color: colours.district, weight: 3, fill: noTiles, fillColor: colours.land, fillOpacity: 1
      }
    }).addTo(this.map);
    var self = this;
    this.townLayers = {};
    this.townLabels = [];
    L.geoJSON(towns, {
      interactive: false,
      style: { color: colours.town, weight: 1.5, dashArray: "5 4", fill: false },
      onEachFeature: function (feature, layer) {
        self.townLayers[feature.id] = layer;
        layer.bindTooltip(el("span", { text: feature.properties.name }), {
          permanent: true, direction: "center", className: "gs-town-label", interactive: false
        });
        self.townLabels.push({ layer: layer, centre: null });
      }
    }).addTo(this.map);
  };

  // Where a town's name may go, around its centre (pixels): the centre, then
  // rings further out, so a name moves no further than it must.
  var LABEL_OFFSETS = [[0, 0]];
  [22, 44, 66].forEach(function (r) {
    [[0, -1], [0, 1], [-1, 0], [1, 0], [-1, -1], [1, -1], [-1, 1], [1, 1]].forEach(function (d) {
      LABEL_OFFSETS.push([d[0] * r * 1.6, d[1] * r]);
    });
  });

  function overlaps(a, b) {
    return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
  }

  // Whether a point lies in a polygon layer (ray casting over every ring).
  function inPolygon(layer, latlng) {
    var inside = false;
    (function walk(rings) {
      if (!rings.length) return;
      if (!(rings[0] instanceof L.LatLng)) { rings.forEach(walk); return; }
      for (var i = 0, j = rings.length - 1; i < rings.length; j = i++) {
        var a = rings[i], b = rings[j];
        if ((a.lat > latlng.lat) !== (b.lat > latlng.lat) &&
            latlng.lng < (b.lng - a.lng) * (latlng.lat - a.lat) / (b.lat - a.lat) + a.lng) inside = !inside;
      }
    })(layer.getLatLngs());
    return inside;
  }

  // Town names never lie under a marker or a cluster: after every move, zoom
  // and toggle each name takes the first place near its town's centre that
  // is clear of icons and of the names placed before it, inside its town;
  // with none free it is left out at this view.
  App.prototype.placeTownLabels = function () {
    if (!this.townLabels || !this.townLabels.length || this.map._animatingZoom) return;
    var map = this.map, size = map.getSize(), view = [0, 0, size.x, size.y];
    var origin = map.getContainer().getBoundingClientRect();
    // Where each icon is going, not where it is: clusters still glide
    // (a CSS transition) when their animation is reported over.
    var taken = Array.prototype.map.call(map.getPane("markerPane").querySelectorAll(".leaflet-marker-icon"), function (icon) {
      var at = map.layerPointToContainerPoint(L.DomUtil.getPosition(icon));
      var left = at.x + (parseFloat(icon.style.marginLeft) || 0), top = at.y + (parseFloat(icon.style.marginTop) || 0);
      return [left, top, left + icon.offsetWidth, top + icon.offsetHeight];
    });
    // The title bar, the panel and the map's controls cover the map: a name
    // under them is not read.
    [this.ui.top, this.ui.panel].concat(Array.prototype.slice.call(map.getContainer().querySelectorAll(".leaflet-control"))).forEach(function (node) {
      var r = node.getBoundingClientRect();
      if (r.width && r.height) taken.push([r.left - origin.left, r.top - origin.top, r.right - origin.left, r.bottom - origin.top]);
    });
    var labels = this.townLabels.map(function (label) {
      var tooltip = label.layer.getTooltip(), node = tooltip && tooltip.getElement();
      if (!node) return null;
      if (!label.centre) label.centre = tooltip.getLatLng() || label.layer.getCenter();
      node.style.display = "";
      return { label: label, tooltip: tooltip, node: node };
    }).filter(Boolean);
    // Sizes are read together, after every name is shown: one layout, not one per name.
    labels.forEach(function (l) { l.w = l.node.offsetWidth; l.h = l.node.offsetHeight; });
    var shown = 0;
    labels.forEach(function (l) {
      var centre = map.latLngToContainerPoint(l.label.centre), place = null;
      var far = 66 * 1.6 + l.w;
      if (!overlaps([centre.x - far, centre.y - far, centre.x + far, centre.y + far], view)) {
        l.node.style.display = "none"; // out of sight; placed when the map moves to it
        return;
      }
      for (var i = 0; i < LABEL_OFFSETS.length && !place; i++) {
        var x = centre.x + LABEL_OFFSETS[i][0], y = centre.y + LABEL_OFFSETS[i][1];
        var box = [x - l.w / 2 - 2, y - l.h / 2 - 2, x + l.w / 2 + 2, y + l.h / 2 + 2];
        // Whole or not at all: a name cut by the map's edge is not read either.
        if (box[0] < 0 || box[1] < 0 || box[2] > size.x || box[3] > size.y) continue;
        if (taken.some(function (t) { return overlaps(t, box); })) continue;
        var at = map.containerPointToLatLng([x, y]);
        if (i && !inPolygon(l.label.layer, at)) continue;
        place = { latlng: at, box: box };
      }
      if (!place) { l.node.style.display = "none"; return; }
      l.tooltip.setLatLng(place.latlng);
      taken.push(place.box);
      shown += 1;
    });
    this.townLabelsShown = shown;
  };

  // The office's roads, water and landmarks (the context layer), in their own
  // pane: above the district's opaque land fill, below the dots and markers,
  // and deaf to clicks, so a site is always what a tap reaches. With no tiles
  // and no context imported, real named places of the gazetteer label the map
  // instead (stations, parks, museums; never a road: its roads are derived
  // segments, not lines to follow). Names show from town zoom (landmarks)
  // and street zoom (roads) on, so the district view stays readable.
  App.prototype.drawContext = function () {
    var self = this, map = this.map;
    var pane = map.createPane("gsContext");
    pane.style.zIndex = 420;
    pane.style.pointerEvents = "none";
    var container = map.getContainer();
    function zoomClasses() {
      container.classList.toggle("gs-zoom-town", map.getZoom() >= 13);
      container.classList.toggle("gs-zoom-street", map.getZoom() >= 15);
    }
    map.on("zoomend", zoomClasses);
    zoomClasses();
    var water = "#9cc3e6", road = "#ffffff", casing = "#a39a88";
    function label(layer, name, className, at) {
      if (!name) return;
      var options = { permanent: true, direction: at ? "right" : "center", offset: at ? [4, 0] : [0, 0],
        className: "gs-context-label " + className, interactive: false, pane: "gsContext" };
      layer.bindTooltip(el("span", { text: name }), options);
    }
    function landmark(lat, lon, name, source) {
      var dot = L.circleMarker([lat, lon], {
        pane: "gsContext", interactive: false, radius: 3.5, weight: 1.5,
        color: "#ffffff", fillColor: "#5b5449", fillOpacity: 1
      });
      label(dot, name, "gs-landmark-label", true);
      dot.feature = { properties: { name: name, source: source } };
      return dot;
    }
    var got = this.embedded
      ? Promise.resolve(this.embedded.layers.context || { features: [] })
      : this.fetchLayer("context");
    return got.then(function (collection) {
      var features = collection.features || [];
      self.context = L.layerGroup().addTo(map);
      function kind(name) { return features.filter(function (f) { return f.properties.kind === name; }); }
      // Water first, then roads (a casing under a white line), then landmarks on top.
      L.geoJSON({ type: "FeatureCollection", features: kind("water") }, {
        pane: "gsContext", interactive: false,
        style: function (f) {
          var area = /Polygon/.test(f.geometry.type);
          return { color: water, weight: area ? 1 : 3, fillColor: water, fillOpacity: area ? 1 : 0 };
        },
        onEachFeature: function (f, layer) { label(layer, f.properties.name, "gs-water-label"); }
      }).addTo(self.context);
      var roads = { type: "FeatureCollection", features: kind("road") };
      L.geoJSON(roads, { pane: "gsContext", interactive: false, style: { color: casing, weight: 7, lineCap: "round" } }).addTo(self.context);
      L.geoJSON(roads, {
        pane: "gsContext", interactive: false, style: { color: road, weight: 5, lineCap: "round" },
        onEachFeature: function (f, layer) { label(layer, f.properties.name, "gs-road-label"); }
      }).addTo(self.context);
      kind("landmark").forEach(function (f) {
        var lonlat = f.geometry.coordinates;
        landmark(lonlat[1], lonlat[0], f.properties.name, "context").addTo(self.context);
      });
      if (!features.length && self.config.tiles === "none") {
        (self.config.gazetteer || []).forEach(function (place) {
          var at = L.latLng(place.lat, place.lon);
          if (self.sites.some(function (s) { return map.distance(at, s.marker.getLatLng()) < GAZETTEER_CLEAR_M; })) return;
          landmark(place.lat, place.lon, place.name, "gazetteer").addTo(self.context);
        });
      }
    }, function () { /* the map stays usable without its context */ });
  };

  App.prototype.addSites = function (layerId, collection) {
    var self = this, entry = this.layers[layerId];
    collection.features.forEach(function (feature) {
      if (!feature.geometry || feature.geometry.type !== "Point") return;
      var props = feature.properties, kind = self.kindConfig(layerId, props.kind);
      var lonlat = feature.geometry.coordinates;
      var marker = L.marker([lonlat[1], lonlat[0]], {
        title: props.name,
        alt: props.name,
        icon: L.divIcon({
          className: "gs-marker",
          html: el("span", { "data-layer": layerId, "data-id": feature.id, style: "background:" + kind.colour, text: kind.glyph }),
          iconSize: [44, 44],
          iconAnchor: [22, 22],
          popupAnchor: [0, -16]
        })
      });
      marker.gsLayer = layerId; // for the cluster icon's mix
      var site = { layer: layerId, feature: feature, marker: marker };
      marker.bindPopup(new self.Popup().setContent(function () { return self.popupContent(site); }));
      entry.markers.push(marker);
      self.sites.push(site);
      if (props.sample) self.sampleShown = true;
    });
    this.cluster.addLayers(entry.markers);
  };

  // A cluster's icon: a ring of its layers' colours, each as wide as its
  // share of the sites, with the count in the middle and a name that says
  // what is in it ("12 个地点：服务站点 5、医疗拥军 7").
  App.prototype.clusterIcon = function (cluster) {
    var self = this, byLayer = {}, total = 0;
    cluster.getAllChildMarkers().forEach(function (marker) {
      byLayer[marker.gsLayer] = (byLayer[marker.gsLayer] || 0) + 1;
      total += 1;
    });
    var stops = [], parts = [], from = 0, ids = [];
    this.config.layers.forEach(function (layer) {
      var n = byLayer[layer.id];
      if (!n) return;
      var to = from + 360 * n / total;
      stops.push(layer.colour + " " + from.toFixed(1) + "deg " + to.toFixed(1) + "deg");
      parts.push(self.label(layer) + " " + n);
      ids.push(layer.id);
      from = to;
    });
    var name = this.t("clusterSites", { n: total }) + this.t("clusterParts") + parts.join(this.t("listSeparator"));
    return L.divIcon({
      className: "gs-cluster",
      html: el("span", { "class": "gs-cluster-ring", "data-layers": ids.join(" "), role: "img", "aria-label": name, title: name,
        style: "background:conic-gradient(" + stops.join(",") + ")" }, [
        el("span", { "class": "gs-cluster-count", text: String(total) })
      ]),
      iconSize: [44, 44]
    });
  };

  App.prototype.addTiles = function (layerId) {
    var self = this, entry = this.layers[layerId];
    entry.tiles = GeoServiceTiles.pointLayer({
      url: "collections/" + layerId + "/tiles/{z}/{x}/{y}.mvt",
      layer: layerId,
      pane: "gsPoints",
      className: "gs-vt gs-vt-" + layerId,
      // The same colour per kind as the markers; a hidden kind is not drawn.
      colour: function (props) {
        return entry.hiddenKinds[props.kind] ? null : self.kindConfig(layerId, props.kind).colour;
      },
      // Tiles are WGS-84; on Amap's GCJ-02 basemap the dots move as markers do.
      shift: this.config.crs === "gcj02" ? wgs84ToGcj02 : null,
      // No requests for tiles where the layer has nothing (its extent, plus
      // 0.01° for the GCJ-02 shift of up to ~700 m).
      bounds: entry.extent ? L.latLngBounds([entry.extent[1] - 0.01, entry.extent[0] - 0.01],
        [entry.extent[3] + 0.01, entry.extent[2] + 0.01]) : undefined
    }).addTo(this.map);
  };

  // The tiled-layer dot under a click (a finger's width around it), or null.
  App.prototype.tiledPointAt = function (latlng) {
    var best = null, self = this;
    this.config.layers.forEach(function (layer) {
      var entry = self.layers[layer.id];
      if (!entry.tiled || !entry.visible || !entry.tiles) return;
      var hit = entry.tiles.pointAt(latlng, 12);
      if (hit && (!best || self.map.distance(latlng, hit.latlng) < self.map.distance(latlng, best.latlng))) {
        hit.layer = layer.id;
        best = hit;
      }
    });
    return best;
  };

  // A tiled dot's popup: the tile has only id, kind and status (and a name
  // close up), so the feature is fetched whole and shown in the same popup a
  // marker has. Below the tiles' detail zoom a dot may stand for ``count``
  // sites of its kind nearby (the lowest id among them): the popup says so
  // and offers the zoom at which each has its own dot.
  App.prototype.openTiledPopup = function (layerId, id, latlng, count) {
    var self = this;
    var popup = new this.Popup()
      .setLatLng(latlng)
      .setContent(el("div", { "class": "gs-popup gs-hint", text: this.t("loading") }))
      .openOn(this.map);
    var url = "collections/" + layerId + "/items/" + encodeURIComponent(id) + "?crs=" + this.config.crs;
    var state = "open-state?layers=" + encodeURIComponent(layerId) + "&id=" + encodeURIComponent(id);
    return Promise.all([this.fetchJson(url), this.fetchJson(state)]).then(function (answers) {
      var feature = answers[0];
      self.keepTimes(answers[1], true);
      var c = feature.geometry.coordinates, content = self.popupContent({ layer: layerId, feature: feature });
      if (count > 1) content.insertBefore(self.thinnedNote(count, latlng), content.children[1]);
      // Content only as the element builders made it (a function returning it).
      popup.setLatLng([c[1], c[0]]).setContent(function () { return content; });
    }, function (error) {
      popup.setContent(el("div", { "class": "gs-popup gs-error", text: self.t("failed") + error.message }));
    });
  };

  App.prototype.thinnedNote = function (count, latlng) {
    var self = this, n = count.toLocaleString(this.lang === "zh" ? "zh-CN" : "en");
    return el("p", { "class": "gs-thinned" }, [
      el("span", { text: this.t("thinned", { n: n }) }), " ",
      el("button", { "class": "gs-button", type: "button", onclick: function () {
        self.map.closePopup();
        self.map.setView(latlng, Math.max(self.map.getZoom() + 1, self.config.tileDetailZoom));
      } }, [this.t("zoomToSites", { n: n })])
    ]);
  };

  // A nearest result on a tiled layer has no marker: show its spot and popup.
  App.prototype.focusTiled = function (layerId, feature) {
    var entry = this.layers[layerId], kind = feature.properties.kind;
    if (!entry.visible) { this.setLayerVisible(layerId, true); this.renderLegend(); }
    if (entry.hiddenKinds[kind]) { this.setKindVisible(layerId, kind, true); this.renderLegend(); }
    var c = feature.geometry.coordinates, target = L.latLng(c[1], c[0]);
    this.map.setView(target, Math.max(this.map.getZoom(), 16));
    return this.openTiledPopup(layerId, feature.id, target);
  };

  // For tests: every tiled layer has drawn the tiles of the current view.
  App.prototype.tilesIdle = function () {
    var self = this;
    return this.config.layers.every(function (layer) {
      var entry = self.layers[layer.id];
      return !entry.tiled || !entry.visible || (entry.tiles && entry.tiles.idle());
    });
  };

  // -- popups ----------------------------------------------------------------

  App.prototype.openBadge = function (site) {
    var state = this.openState[site.layer + "/" + site.feature.id] || "unknown";
    var badge = this.stateBadge(state);
    // Past the offline file's stretch of hours, say why a site with hours is unknown.
    if (this.embedded && this.offlineUntil && site.feature.properties.opening_hours) {
      badge.textContent += this.t("beyondHorizon", { d: this.offlineUntil });
    }
    return badge;
  };

  // "明天 08:00 开放": when a closed site opens next, said from the day the
  // states are for (the service's, or the offline file's reading of the clock).
  App.prototype.nextOpening = function (site) {
    var key = site.layer + "/" + site.feature.id, when = this.opens[key];
    if (!when || !this.statesAt || this.openState[key] !== "closed") return null;
    var day = function (text) { var m = /^(\d{4})-(\d{2})-(\d{2})/.exec(text); return m && Date.UTC(+m[1], +m[2] - 1, +m[3]); };
    var from = day(this.statesAt), to = day(when), time = when.slice(11, 16);
    if (from == null || to == null) return null;
    var days = Math.round((to - from) / 86400000), date = new Date(to), text;
    if (days === 0) text = this.t("opensToday", { t: time });
    else if (days === 1) text = this.t("opensTomorrow", { t: time });
    else if (days > 1 && days < 7) text = this.t("opensOn", { d: TEXT[this.lang].weekdays[date.getUTCDay()], t: time });
    else {
      var months = TEXT[this.lang].months;
      var shown = this.t("date", { m: date.getUTCMonth() + 1, d: date.getUTCDate(), M: months ? months[date.getUTCMonth()] : "" });
      text = this.t("opensOn", { d: shown, t: time });
    }
    return el("span", { "class": "gs-next-opening", text: text });
  };

  App.prototype.stateBadge = function (state) {
    return el("span", { "class": "gs-badge gs-" + state, text: this.t(state) });
  };

  App.prototype.navigationLinks = function (site) {
    var c = site.feature.geometry.coordinates;
    var gcj = this.config.crs === "gcj02" ? c : wgs84ToGcj02(c[0], c[1]);
    var bd = gcj02ToBd09(gcj[0], gcj[1]);
    var name = encodeURIComponent(site.feature.properties.name || site.feature.id);
    return {
      amap: "https://uri.amap.com/marker?position=" + gcj[0].toFixed(6) + "," + gcj[1].toFixed(6) +
        "&name=" + name + "&coordinate=gaode&callnative=1",
      baidu: "https://api.map.baidu.com/marker?location=" + bd[1].toFixed(6) + "," + bd[0].toFixed(6) +
        "&title=" + name + "&content=" + name + "&output=html&coord_type=bd09ll&src=zhangdian.geo-service",
      tencent: "https://apis.map.qq.com/uri/v1/marker?marker=coord:" + gcj[1].toFixed(6) + "," +
        gcj[0].toFixed(6) + ";title:" + name + "&referer=zhangdian-geo-service"
    };
  };

  App.prototype.popupContent = function (site) {
    var self = this, p = site.feature.properties, values = this.config.values, names = this.config.properties;
    var layer = this.layers[site.layer].config, kind = this.kindConfig(site.layer, p.kind);
    var rows = [];
    function row(name, content, title) {
      var parts = [].concat(content).filter(function (part) { return part != null && part !== ""; });
      if (parts.length) rows.push(el("dt", { text: title || self.label(names[name]) }), el("dd", {}, parts));
    }
    function list(name, key) {
      return (p[name] || []).map(function (v) { return self.label(values[key][v]) || String(v); }).join(self.t("listSeparator"));
    }
    // Only digits and + reach the tel: link; the number is shown as stored.
    var dial = p.phone ? String(p.phone).replace(/[^0-9+]/g, "") : "";
    // Calling and navigating come first: a popup taller than the screen
    // scrolls its details, never these.
    if (p.phone) row("phone", dial ? el("a", { href: "tel:" + dial, text: String(p.phone) }) : String(p.phone));
    row("address", p.address == null ? null : String(p.address));
    // Hours as the service words them; a value it cannot word is shown as
    // written, and labelled so.
    var hours = p.opening_hours ? this.hoursText[String(p.opening_hours)] : null;
    var next = this.nextOpening(site);
    row("opening_hours", [
      hours ? el("span", { "class": "gs-hours", text: hours[this.lang] || hours.zh }) : p.opening_hours ? String(p.opening_hours) : "",
      p.opening_hours ? " " : "", this.openBadge(site), next ? " " : null, next
    ], p.opening_hours && !hours ? this.t("hoursAsWritten") : null);
    row("window", p.window == null ? null : String(p.window));
    row("services", list("services", "services"));
    row("eligible", list("eligible", "eligible"));
    row("responsible_unit", p.responsible_unit == null ? null : String(p.responsible_unit));
    if (p.status && p.status !== "open") row("status", this.label(values.status[p.status]) || String(p.status));
    var links = this.navigationLinks(site);
    return el("div", { "class": "gs-popup", lang: this.lang === "zh" ? "zh-CN" : "en" }, [
      el("h3", { tabindex: "-1" }, [
        p.name == null ? "" : String(p.name),
        p.sample ? " " : null,
        p.sample ? el("span", { "class": "gs-badge gs-sample-tag", text: this.t("sampleTag") }) : null
      ]),
      el("div", { "class": "gs-meta", text: this.label(layer) + " · " + this.label(kind) }),
      el("div", { "class": "gs-nav", role: "group", "aria-label": this.t("navigate") }, ["amap", "baidu", "tencent"].map(function (app) {
        return el("a", { target: "_blank", rel: "noopener", "data-app": app, href: links[app], text: self.t(app) });
      })),
      el("dl", {}, rows)
    ]);
  };

  // -- the panel -------------------------------------------------------------

  App.prototype.buildUi = function () {
    var self = this, container = this.map.getContainer().parentNode || document.body;
    this.ui = {};
    this.ui.title = el("h1");
    this.ui.language = el("button", { "class": "gs-button", type: "button", id: "gs-language", onclick: function () { self.setLanguage(self.lang === "zh" ? "en" : "zh"); } });
    this.ui.elder = el("button", { "class": "gs-button", type: "button", id: "gs-elder", "aria-pressed": "false", onclick: function () { self.setElder(!self.elder); } });
    this.ui.bar = el("div", { "class": "gs-bar" }, [this.ui.title, this.ui.elder, this.ui.language]);
    this.ui.sampleText = el("span", { "class": "gs-sample-text" });
    this.ui.sampleClose = el("button", { "class": "gs-sample-close", type: "button", id: "gs-sample-close", onclick: function () { self.dismissSample(true); } }, ["×"]);
    this.ui.sample = el("div", { "class": "gs-sample", id: "gs-sample", role: "note", hidden: "" }, [this.ui.sampleText, this.ui.sampleClose]);
    this.ui.top = el("header", { "class": "gs-top" }, [this.ui.bar, this.ui.sample]);

    this.ui.toggle = el("button", { "class": "gs-button", type: "button", id: "gs-toggle", "aria-controls": "gs-panel", onclick: function () { self.togglePanel(); } });
    this.ui.locate = el("button", { "class": "gs-button gs-primary", type: "button", id: "gs-locate", onclick: function () { self.locate(); } });
    // The bottom sheet's grip: drag it, tap it (peek, half, full in turn) or
    // use the arrow keys; its state is read out through aria-expanded and its name.
    this.ui.grip = el("button", { "class": "gs-grip", type: "button", id: "gs-grip", "aria-controls": "gs-panel",
      onclick: function () { if (!self.dragged) self.stepSheet(self.sheet === "full" ? -2 : 1); self.dragged = false; },
      onkeydown: function (event) {
        var step = { ArrowUp: 1, ArrowDown: -1 }[event.key];
        if (step) { event.preventDefault(); self.stepSheet(step); }
      },
      onpointerdown: function (event) { self.dragSheet(event); } }, [el("span", { "aria-hidden": "true" })]);
    this.ui.notice = el("p", { "class": "gs-notice", id: "gs-notice", role: "status", hidden: "" });
    var handle = el("div", { "class": "gs-handle" }, [this.ui.grip, el("div", { "class": "gs-handle-row" }, [this.ui.locate, this.ui.toggle]), this.ui.notice]);

    this.ui.searchLabel = el("h2");
    this.ui.search = el("input", { type: "search", id: "gs-search", autocomplete: "off", oninput: function () { self.search(self.ui.search.value); } });
    this.ui.matches = el("ul", { "class": "gs-list", id: "gs-matches" });
    var searchSection = el("section", { "class": "gs-section" }, [this.ui.searchLabel, el("div", { "class": "gs-row" }, [this.ui.search]), this.ui.matches]);

    this.ui.nearestLabel = el("h2");
    this.ui.hint = el("p", { "class": "gs-hint" });
    this.ui.layerSelect = el("select", { id: "gs-nearest-layer", onchange: function () { self.fillKindSelect(); self.runNearest(); } });
    this.ui.kindSelect = el("select", { id: "gs-nearest-kind", onchange: function () { self.runNearest(); } });
    this.ui.openNow = el("input", { type: "checkbox", id: "gs-open-now", onchange: function () { self.runNearest(); } });
    this.ui.openNowText = el("span");
    this.ui.status = el("p", { "class": "gs-hint", id: "gs-status", "aria-live": "polite" });
    this.ui.results = el("ol", { "class": "gs-list", id: "gs-nearest" });
    this.ui.note = el("p", { "class": "gs-hint" });
    var nearestSection = el("section", { "class": "gs-section", id: "gs-nearest-section" }, [
      this.ui.nearestLabel, this.ui.hint,
      el("div", { "class": "gs-row" }, [this.ui.layerSelect, this.ui.kindSelect]),
      el("label", { "class": "gs-check" }, [this.ui.openNow, this.ui.openNowText]),
      this.ui.status, this.ui.results, this.ui.note
    ]);

    this.ui.legendLabel = el("h2");
    this.ui.legend = el("div", { id: "gs-legend" });
    var legendSection = el("section", { "class": "gs-section" }, [this.ui.legendLabel, this.ui.legend]);

    this.ui.panel = el("section", { "class": "gs-panel", id: "gs-panel" }, [handle, nearestSection, searchSection, legendSection]);
    // Taps and scrolls in the panel must not reach the map underneath.
    L.DomEvent.disableClickPropagation(this.ui.panel);
    L.DomEvent.disableScrollPropagation(this.ui.panel);
    L.DomEvent.disableClickPropagation(this.ui.top);
    // Before the map in the document: the keyboard reaches the title bar and
    // the panel first, not after every marker.
    var mapNode = this.map.getContainer();
    [this.ui.top, this.ui.panel].forEach(function (node) {
      if (mapNode.parentNode === container) container.insertBefore(node, mapNode);
      else container.appendChild(node);
    });
    // Landmarks: the title bar (header), the map (main), the panel (a named section).
    this.map.getContainer().setAttribute("role", "main");
    document.documentElement.classList.toggle("gs-elder", this.elder);
    // Phones open on a folded sheet: the map first, 定位我 in reach.
    this.sheet = this.isPhone() ? "peek" : "half";
    this.renderTexts();
  };

  App.prototype.renderTexts = function () {
    var t = this.t.bind(this);
    document.documentElement.lang = this.lang === "zh" ? "zh-CN" : "en";
    this.ui.title.textContent = this.label(this.config.title);
    document.title = this.label(this.config.title);
    this.ui.language.textContent = t("language");
    this.ui.language.title = t("languageTitle");
    this.renderSampleNotice();
    this.ui.elder.textContent = t("elder");
    this.ui.elder.title = t("elderTitle");
    this.ui.elder.setAttribute("aria-pressed", this.elder ? "true" : "false");
    this.map.getContainer().setAttribute("aria-label", t("map"));
    this.ui.panel.setAttribute("aria-label", t("sheet"));
    var zoom = this.zoomControl.getContainer();
    [["in", "zoomIn"], ["out", "zoomOut"]].forEach(function (pair) {
      var button = zoom.querySelector(".leaflet-control-zoom-" + pair[0]);
      button.title = t(pair[1]);
      button.setAttribute("aria-label", t(pair[1]));
    });
    if (this.noticeKey) this.showNotice(this.noticeKey);
    this.map.eachLayer(this.nameMarker.bind(this));
    this.layoutTop();
    this.renderSheet();
    this.ui.locate.textContent = t("locate");
    this.ui.searchLabel.textContent = t("search");
    this.ui.search.placeholder = t("searchPlaceholder");
    this.ui.search.setAttribute("aria-label", t("search"));
    this.ui.nearestLabel.textContent = t("nearestTab");
    this.ui.hint.textContent = t("pickHint");
    this.ui.openNowText.textContent = this.openNowLabel();
    this.ui.legendLabel.textContent = t("layersTab");
    this.ui.note.textContent = t("walkNote", { d: this.config.walking.detour, s: this.config.walking.speedKmh }) +
      (this.embedded ? " " + t("offlineNote") : "");
    this.fillLayerSelect();
    this.renderLegend();
    if (this.ui.search.value) this.search(this.ui.search.value);
    if (this.lastResults && this.lastResults.point === this.point) this.renderResults(this.lastResults);
  };

  App.prototype.setLanguage = function (lang) {
    this.lang = lang;
    try { localStorage.setItem("gs-lang", lang); } catch (e) { /* private mode: fine */ }
    this.renderTexts();
    this.cluster.refreshClusters(); // their names are in the language too
    this.map.closePopup();
  };

  // 长辈模式: larger text, higher contrast, bigger targets (app.css under
  // .gs-elder); remembered like the language.
  App.prototype.setElder = function (on) {
    this.elder = on;
    try { localStorage.setItem("gs-elder", on ? "1" : "0"); } catch (e) { /* private mode: fine */ }
    document.documentElement.classList.toggle("gs-elder", on);
    this.map.closePopup();
    this.renderTexts();
    this.map.invalidateSize();
    this.keepInView();
  };

  // A marker is a button named by its site (not by its glyph, which would
  // be read otherwise), a cluster by how many places it holds.
  App.prototype.nameMarker = function (layer) {
    var node = layer.getElement && layer.getElement();
    if (!node || !(layer instanceof L.Marker) || node.getAttribute("role") !== "button") return;
    if (layer.getChildCount) {
      // The ring's own name says what the cluster holds (clusterIcon).
      var ring = node.querySelector(".gs-cluster-ring");
      var held = ring ? ring.getAttribute("aria-label") : this.t("clusterSites", { n: layer.getChildCount() });
      node.setAttribute("aria-label", this.t("cluster", { name: held }));
    }
    else if (layer.options.title) node.setAttribute("aria-label", layer.options.title);
  };

  // The same breakpoint as app.css: below it the panel is a bottom sheet.
  App.prototype.isPhone = function () {
    return window.matchMedia("(max-width: 719px)").matches;
  };

  App.prototype.togglePanel = function (collapse) {
    if (collapse === undefined) collapse = this.sheet !== "peek";
    this.setSheet(collapse ? "peek" : "half");
  };

  // peek (the grip, 定位我 and notices), half, or full (up to the top bar).
  // ``still``: the map keeps its view (a popup opening pans it itself).
  App.prototype.setSheet = function (state, still) {
    this.sheet = state;
    this.renderSheet();
    if (!still) this.keepInView();
  };

  App.prototype.stepSheet = function (step) {
    var at = SHEET_STATES.indexOf(this.sheet) + step;
    this.setSheet(SHEET_STATES[Math.max(0, Math.min(SHEET_STATES.length - 1, at))]);
  };

  App.prototype.renderSheet = function () {
    var panel = this.ui.panel, state = this.sheet, folded = state === "peek";
    panel.setAttribute("data-sheet", state);
    panel.style.height = "";
    this.ui.toggle.setAttribute("aria-expanded", folded ? "false" : "true");
    this.ui.toggle.textContent = this.t(folded ? "expand" : "collapse");
    this.ui.grip.setAttribute("aria-expanded", folded ? "false" : "true");
    this.ui.grip.setAttribute("aria-label", this.t("sheetGrip") + "：" + this.t("sheetStates")[state] + "（" + this.t("sheetHelp") + "）");
  };

  // Dragging the grip: the sheet follows the finger, then settles in the
  // nearest of its three heights.
  App.prototype.dragSheet = function (start) {
    var self = this, panel = this.ui.panel, grip = this.ui.grip;
    if (!this.isPhone()) return;
    var startY = start.clientY, startHeight = panel.getBoundingClientRect().height, moved = false;
    var room = this.map.getContainer().getBoundingClientRect().height;
    function move(event) {
      if (Math.abs(event.clientY - startY) > 6) moved = true;
      if (!moved) return;
      var top = self.ui.top.offsetHeight;
      panel.style.height = Math.max(40, Math.min(room - top, startHeight + startY - event.clientY)) + "px";
    }
    function end() {
      grip.removeEventListener("pointermove", move);
      grip.removeEventListener("pointerup", end);
      grip.removeEventListener("pointercancel", end);
      if (!moved) return;
      self.dragged = true;
      var height = panel.getBoundingClientRect().height;
      var heights = { peek: self.ui.panel.querySelector(".gs-handle").offsetHeight, half: room / 2, full: room - self.ui.top.offsetHeight };
      var best = SHEET_STATES.reduce(function (a, b) { return Math.abs(heights[a] - height) <= Math.abs(heights[b] - height) ? a : b; });
      self.setSheet(best);
    }
    try { grip.setPointerCapture(start.pointerId); } catch (e) { /* a synthetic event: fine */ }
    grip.addEventListener("pointermove", move);
    grip.addEventListener("pointerup", end);
    grip.addEventListener("pointercancel", end);
  };

  // Popups: their close button named in the page's language, focus moved
  // into them (a keyboard user reads on from the title), Escape closes them
  // and focus goes back where it was; on a phone the sheet unfolds again
  // when the popup was opened from it.
  App.prototype.watchPopups = function () {
    var self = this;
    this.map.on("popupopen", function (event) {
      var popup = event.popup, node = popup.getElement(), close = node.querySelector(".leaflet-popup-close-button");
      document.documentElement.classList.add("gs-popup-open");
      if (close) { close.setAttribute("aria-label", self.t("closePopup")); close.title = self.t("closePopup"); }
      var active = document.activeElement;
      self.popupOpener = active && active !== document.body && !node.contains(active) ? active : self.popupOpener;
      var title = node.querySelector(".gs-popup h3") || node.querySelector(".leaflet-popup-content");
      if (title) { title.setAttribute("tabindex", "-1"); title.focus({ preventScroll: true }); }
    });
    this.map.on("popupclose", function (event) {
      var node = event.popup.getElement(), back = self.popupOpener;
      var hadFocus = node && node.contains(document.activeElement);
      document.documentElement.classList.remove("gs-popup-open");
      self.popupOpener = null;
      if (self.sheetBeforePopup && back && self.ui.panel.contains(back)) self.setSheet(self.sheetBeforePopup, true);
      self.sheetBeforePopup = null;
      if (!hadFocus) return;
      if (back && document.contains(back) && back.getClientRects().length) back.focus({ preventScroll: true });
      else self.map.getContainer().focus({ preventScroll: true });
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && self.map._popup && self.map.hasLayer(self.map._popup)) {
        event.preventDefault();
        self.map.closePopup();
      }
    });
  };

  // A popup opens whole on the screen, below the title bar and beside the
  // panel: as wide as a phone allows, panned clear of what covers the map. On
  // a phone the panel covers half the map, so it folds away (展开 brings it
  // back), and the popup, as wide as the screen, goes below the zoom buttons.
  App.prototype.makeRoomForPopup = function (popup) {
    var map = this.map.getContainer().getBoundingClientRect();
    var phone = this.isPhone();
    if (phone && this.sheet !== "peek") {
      if (!this.sheetBeforePopup) this.sheetBeforePopup = this.sheet;
      this.setSheet("peek", true);
    }
    var padding = this.viewPadding();
    // Clear of the zoom buttons: left of them on a desktop; on a phone the
    // popup is as wide as the screen and they step aside while it is open
    // (app.css, .gs-popup-open), leaving it the room from the top bar down.
    var zoom = this.zoomControl.getContainer().getBoundingClientRect();
    if (!phone) padding.paddingBottomRight[0] = Math.max(padding.paddingBottomRight[0], map.right - zoom.left + 10);
    // Leaflet's margins and border around the content (app.css: wider in 长辈模式).
    var chrome = this.elder ? 74 : 62;
    popup.options.maxWidth = Math.max(160, Math.min(this.elder ? 340 : 300, map.width - padding.paddingTopLeft[0] - padding.paddingBottomRight[0] - chrome));
    // Taller than the room left, the details scroll inside the popup (the
    // name, calling and navigating come first); 48 px: margins, border, tip.
    popup.options.maxHeight = Math.max(120, map.height - padding.paddingTopLeft[1] - padding.paddingBottomRight[1] - 48);
    popup.options.autoPanPaddingTopLeft = padding.paddingTopLeft;
    popup.options.autoPanPaddingBottomRight = padding.paddingBottomRight;
  };

  // How many of the map's sites are sample data: the marker layers' own
  // features and, for tiled layers, the counts fetchTiledInfo asked for.
  App.prototype.sampleCounts = function () {
    var self = this, total = 0, samples = 0;
    this.sites.forEach(function (s) { total += 1; if (s.feature.properties.sample) samples += 1; });
    this.config.layers.forEach(function (layer) {
      var entry = self.layers[layer.id];
      if (entry.tiled) { total += entry.count || 0; samples += entry.sampleCount || 0; }
    });
    return { total: total, samples: samples };
  };

  App.prototype.renderSampleNotice = function () {
    var counts = this.sampleCounts();
    this.ui.sampleText.textContent = this.t(counts.samples >= counts.total ? "sampleAll" : "sample", { n: counts.total, s: counts.samples });
    this.ui.sampleClose.setAttribute("aria-label", this.t("sampleClose"));
    this.ui.sampleClose.title = this.t("sampleClose");
  };

  // The notice shows while the map has sample sites, unless the resident
  // closed it (remembered on this device; the legend brings it back).
  App.prototype.updateSampleNotice = function () {
    this.renderSampleNotice();
    if (this.sampleShown && !this.sampleClosed) this.ui.sample.removeAttribute("hidden");
    else this.ui.sample.setAttribute("hidden", "");
    this.layoutTop();
  };

  App.prototype.dismissSample = function (dismissed) {
    try {
      if (dismissed) window.localStorage.setItem("gs-sample-dismissed", "1");
      else window.localStorage.removeItem("gs-sample-dismissed");
    } catch (e) { /* storage blocked: the notice closes for this visit only */ }
    this.sampleClosed = dismissed;
    this.updateSampleNotice();
    this.renderLegend();
    if (!dismissed) this.ui.sampleClose.focus();
  };

  // Map controls and the desktop panel start below the title bar and notice.
  App.prototype.layoutTop = function () {
    document.documentElement.style.setProperty("--gs-top", this.ui.top.offsetHeight + "px");
  };

  // The part of the map the panel covers, so fitted views stay visible.
  // Measured, not assumed: the sheet's height changes with its state, the
  // notice and 长辈模式.
  App.prototype.viewPadding = function () {
    var panel = this.ui.panel.getBoundingClientRect(), map = this.map.getContainer().getBoundingClientRect();
    var top = this.ui.top.getBoundingClientRect().bottom - map.top + 10;
    if (!this.isPhone()) return { paddingTopLeft: [panel.right - map.left + 10, top], paddingBottomRight: [10, 10] };
    return { paddingTopLeft: [10, top], paddingBottomRight: [10, Math.max(10, map.bottom - panel.top + 10)] };
  };

  App.prototype.fillLayerSelect = function () {
    var self = this, select = this.ui.layerSelect, current = select.value;
    clear(select);
    select.appendChild(el("option", { value: "", text: this.t("allLayers") }));
    this.config.layers.forEach(function (layer) {
      select.appendChild(el("option", { value: layer.id, text: self.label(layer) }));
    });
    select.value = current;
    select.setAttribute("aria-label", this.t("layer"));
    this.fillKindSelect();
  };

  App.prototype.fillKindSelect = function () {
    var self = this, select = this.ui.kindSelect, current = select.value, layerId = this.ui.layerSelect.value;
    clear(select);
    select.appendChild(el("option", { value: "", text: this.t("allKinds") }));
    this.config.layers.forEach(function (layer) {
      if (layerId && layer.id !== layerId) return;
      layer.kinds.forEach(function (kind) {
        select.appendChild(el("option", { value: kind.id, text: self.label(kind) }));
      });
    });
    select.value = Array.prototype.some.call(select.options, function (o) { return o.value === current; }) ? current : "";
    select.setAttribute("aria-label", this.t("kind"));
  };

  // -- legend and layer toggles -----------------------------------------------

  App.prototype.renderLegend = function () {
    if (!this.ui || !this.ui.legend) return;
    var self = this, legend = this.ui.legend, counts = {};
    this.sites.forEach(function (s) {
      var key = s.layer + "/" + s.feature.properties.kind;
      counts[key] = (counts[key] || 0) + 1;
    });
    clear(legend);
    this.config.layers.forEach(function (layer) {
      var entry = self.layers[layer.id];
      var box = el("input", { type: "checkbox", "data-layer": layer.id, onchange: function (e) { self.setLayerVisible(layer.id, e.target.checked); } });
      box.checked = entry.visible;
      legend.appendChild(el("label", { "class": "gs-check gs-layer-toggle" }, [
        box,
        el("span", { "class": "gs-swatch", style: "background:" + layer.colour, text: layer.glyph }),
        el("span", { text: self.label(layer) }),
        el("span", { "class": "gs-count", text: String(entry.tiled ? entry.count : entry.markers.length) + self.t("sites") })
      ]));
      var kinds = el("div", { "class": "gs-legend-kinds" });
      layer.kinds.forEach(function (kind) {
        var count = (entry.tiled ? (entry.kindCounts || {})[kind.id] : counts[layer.id + "/" + kind.id]) || 0;
        if (!count) return;
        var kindBox = el("input", { type: "checkbox", "data-layer": layer.id, "data-kind": kind.id, onchange: function (e) { self.setKindVisible(layer.id, kind.id, e.target.checked); } });
        kindBox.checked = !entry.hiddenKinds[kind.id];
        kinds.appendChild(el("label", { "class": "gs-check" }, [
          kindBox,
          el("span", { "class": "gs-swatch", style: "background:" + kind.colour, text: kind.glyph }),
          el("span", { text: self.label(kind) }),
          el("span", { "class": "gs-count", text: String(count) })
        ]));
      });
      legend.appendChild(kinds);
    });
    var b = this.config.boundaries;
    legend.appendChild(el("div", { "class": "gs-row" }, [el("span", { "class": "gs-line-swatch", style: "border-color:" + b.district }), el("span", { text: this.t("district") })]));
    legend.appendChild(el("div", { "class": "gs-row" }, [el("span", { "class": "gs-line-swatch", style: "border-top-style:dashed;border-color:" + b.town }), el("span", { text: this.t("towns") })]));
    // A closed sample notice can be read again from here.
    if (this.sampleShown && this.sampleClosed) {
      legend.appendChild(el("div", { "class": "gs-row" }, [el("button", { "class": "gs-button", type: "button", id: "gs-sample-show",
        onclick: function () { self.dismissSample(false); } }, [el("span", { "class": "gs-badge gs-sample-tag", text: this.t("sampleTag") }), " ", this.t("sampleShow")])]));
    }
  };

  // The markers of a layer that its toggles let through.
  App.prototype.shownMarkers = function (layerId) {
    var entry = this.layers[layerId];
    if (!entry.visible) return [];
    return this.sites.filter(function (s) {
      return s.layer === layerId && !entry.hiddenKinds[s.feature.properties.kind];
    }).map(function (s) { return s.marker; });
  };

  App.prototype.setLayerVisible = function (layerId, visible) {
    var entry = this.layers[layerId];
    if (entry.tiled) {
      entry.visible = visible;
      if (!entry.tiles) return;
      if (visible) entry.tiles.addTo(this.map);
      else this.map.removeLayer(entry.tiles);
      return;
    }
    this.cluster.removeLayers(this.shownMarkers(layerId));
    entry.visible = visible;
    this.cluster.addLayers(this.shownMarkers(layerId));
    this.placeTownLabels();
  };

  App.prototype.setKindVisible = function (layerId, kindId, visible) {
    var entry = this.layers[layerId];
    if (entry.tiled) {
      // Tiles stay cached in the layer: the redraw filters without refetching.
      if (visible) delete entry.hiddenKinds[kindId];
      else entry.hiddenKinds[kindId] = true;
      if (entry.tiles) entry.tiles.redraw();
      return;
    }
    this.cluster.removeLayers(this.shownMarkers(layerId));
    if (visible) delete entry.hiddenKinds[kindId];
    else entry.hiddenKinds[kindId] = true;
    this.cluster.addLayers(this.shownMarkers(layerId));
    this.placeTownLabels();
  };

  // -- search ----------------------------------------------------------------

  // Names match first, then sites whose kind or layer is named so, in
  // Chinese or English ("bank" finds the banks): Latin letters in any case,
  // full-width ones (Ａ) as ASCII.
  App.prototype.search = function (text) {
    var self = this, query = folded(text), list = this.ui.matches;
    clear(list);
    if (!query) return;
    function has(value) { return value != null && folded(value).indexOf(query) >= 0; }
    function named(entry) { return entry && (has(entry.zh) || has(entry.en)); }
    var byName = [], byKind = [];
    this.sites.forEach(function (s) {
      var props = s.feature.properties;
      if (has(props.name) || has(props.name_en)) byName.push(s);
      else if (named(self.kindConfig(s.layer, props.kind)) || named(self.layers[s.layer].config)) byKind.push(s);
    });
    var found = byName.concat(byKind).slice(0, 8);
    if (!found.length) { list.appendChild(el("li", { "class": "gs-hint", text: this.t("noMatch") })); return; }
    found.forEach(function (site) {
      var kind = self.kindConfig(site.layer, site.feature.properties.kind);
      list.appendChild(el("li", {}, [el("button", { type: "button", onclick: function () { self.focus(site); } }, [
        el("span", { "class": "gs-swatch", style: "background:" + kind.colour, text: kind.glyph }),
        el("span", {}, [el("span", { text: site.feature.properties.name }), el("span", { "class": "gs-meta", text: self.label(kind) + " · " + (site.feature.properties.address || "") })])
      ])]));
    });
  };

  App.prototype.focus = function (site) {
    var entry = this.layers[site.layer];
    if (!entry.visible) { this.setLayerVisible(site.layer, true); this.renderLegend(); }
    if (entry.hiddenKinds[site.feature.properties.kind]) { this.setKindVisible(site.layer, site.feature.properties.kind, true); this.renderLegend(); }
    this.cluster.zoomToShowLayer(site.marker, function () { site.marker.openPopup(); });
  };

  // -- the resident's point and the nearest sites --------------------------------

  // Browsers give a position only to a secure page (HTTPS, or localhost);
  // otherwise, and on any error, the resident reads why in their language
  // (never the browser's English message) and may tap the map instead.
  App.prototype.locate = function () {
    var self = this;
    if (window.isSecureContext === false) { this.showNotice("insecure"); return; }
    if (!navigator.geolocation) { this.showNotice("geoMissing"); return; }
    this.showNotice(null);
    navigator.geolocation.getCurrentPosition(function (position) {
      var lon = position.coords.longitude, lat = position.coords.latitude;
      // Browsers report WGS-84; a GCJ-02 basemap needs the shifted position.
      if (self.config.crs === "gcj02") { var g = wgs84ToGcj02(lon, lat); lon = g[0]; lat = g[1]; }
      self.setPoint(L.latLng(lat, lon), true);
    }, function (error) {
      var codes = { 1: "geoDenied", 2: "geoUnavailable", 3: "geoTimeout" };
      self.showNotice(codes[error.code] || "geoUnavailable");
    }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
  };

  // A notice in the sheet's always-visible part (the locate messages), kept
  // as a text key so that it follows the language.
  App.prototype.showNotice = function (key) {
    this.noticeKey = key;
    this.ui.notice.textContent = key ? this.t(key) : "";
    if (key) this.ui.notice.removeAttribute("hidden");
    else this.ui.notice.setAttribute("hidden", "");
  };

  App.prototype.setPoint = function (latlng, pan) {
    this.point = latlng;
    this.showNotice(null);
    if (pan) this.centreOn(latlng, Math.max(this.map.getZoom(), 14));
    this.runNearest();
  };

  // Centres the map on a point within the part of it nothing covers (the
  // top bar above, the sheet below or the panel beside).
  App.prototype.centreOn = function (latlng, zoom) {
    var padding = this.viewPadding();
    var shift = L.point(padding.paddingTopLeft).subtract(L.point(padding.paddingBottomRight)).divideBy(2);
    this.map.setView(this.map.unproject(this.map.project(latlng, zoom).subtract(shift), zoom), zoom, { animate: false });
  };

  // After the sheet moves: the resident's point and the nearest sites back
  // in the map's uncovered part (nothing to keep while the sheet is full).
  App.prototype.keepInView = function () {
    if (this.isPhone() && this.sheet === "full") return;
    if (this.lastResults && this.lastResults.length && this.lastResults.point === this.point) this.fitResults(this.lastResults);
    else if (this.point) this.map.panInside(this.point, this.viewPadding());
  };

  App.prototype.fitResults = function (results) {
    var p = results.point || this.point, bounds = L.latLngBounds([p]);
    results.forEach(function (result) {
      var c = result.feature.geometry.coordinates;
      bounds.extend([c[1], c[0]]);
    });
    var padding = this.viewPadding();
    padding.maxZoom = 16;
    this.map.fitBounds(bounds.pad(0.1), padding);
  };

  App.prototype.showError = function (message) {
    this.ui.status.className = "gs-error";
    this.ui.status.textContent = message;
  };

  App.prototype.nearestFilters = function () {
    return {
      layer: this.ui.layerSelect.value,
      kind: this.ui.kindSelect.value,
      openNow: this.ui.openNow.checked
    };
  };

  App.prototype.runNearest = function () {
    if (!this.point) return Promise.resolve([]);
    var self = this, filters = this.nearestFilters(), k = this.config.nearestK, ticket = {};
    this.ticket = ticket;
    this.ui.status.className = "gs-hint";
    this.ui.status.textContent = this.t("loading");
    var answer;
    if (this.embedded) {
      answer = Promise.resolve(this.nearestOffline(filters, k));
    } else {
      var params = ["lon=" + this.point.lng.toFixed(6), "lat=" + this.point.lat.toFixed(6), "k=" + k, "crs=" + this.config.crs];
      if (filters.layer) params.push("layers=" + encodeURIComponent(filters.layer));
      if (filters.kind) params.push("kind=" + encodeURIComponent(filters.kind));
      if (filters.openNow) params.push("open_now=true");
      answer = this.fetchJson("nearest?" + params.join("&")).then(function (body) {
        return body.features.map(function (f) {
          var state = f.properties.open_now === true ? "open" : f.properties.open_now === false ? "closed" : "unknown";
          return { site: self.findSite(f.properties.layer, f.id), distance: f.properties.distance_m, walk: f.properties.walk_minutes, feature: f, state: state };
        });
      });
    }
    var point = this.point;
    return answer.then(function (results) {
      if (self.ticket !== ticket) return results; // a newer question was asked meanwhile
      results.point = point;
      self.lastResults = results;
      // The answer is the list: a folded sheet opens to show it, before the
      // map fits the answer above it (a second fit during the first one's
      // zoom animation would be dropped by Leaflet).
      if (self.isPhone() && self.sheet === "peek" && results.length) self.setSheet("half", true);
      self.renderResults(results);
      return results;
    }, function (error) {
      if (self.ticket === ticket) {
        // Answers for an earlier point must not stay drawn from this one.
        self.lastResults = null;
        self.nearestLayer.clearLayers();
        clear(self.ui.results);
        self.showError(self.t("failed") + error.message);
      }
      return [];
    });
  };

  App.prototype.findSite = function (layerId, id) {
    for (var i = 0; i < this.sites.length; i++) {
      if (this.sites[i].layer === layerId && String(this.sites[i].feature.id) === String(id)) return this.sites[i];
    }
    return null;
  };

  App.prototype.nearestOffline = function (filters, k) {
    var self = this, p = this.point, w = this.config.walking;
    return this.sites.filter(function (s) {
      var props = s.feature.properties;
      return (!filters.layer || s.layer === filters.layer) && (!filters.kind || props.kind === filters.kind) &&
        (props.status || "open") === "open" && (!filters.openNow || self.openState[s.layer + "/" + s.feature.id] === "open");
    }).map(function (s) {
      var c = s.feature.geometry.coordinates, d = sphericalMetres(p.lat, p.lng, c[1], c[0]);
      return { site: s, distance: d, walk: d * w.detour / (w.speedKmh * 1000 / 60) };
    }).sort(function (a, b) {
      var ia = String(a.site.feature.id), ib = String(b.site.feature.id);
      return a.distance - b.distance || (ia < ib ? -1 : ia > ib ? 1 : 0); // ids by code point, as the service
    }).slice(0, k).map(function (r) { r.feature = r.site.feature; return r; }).filter(function () { return self.point === p; });
  };

  App.prototype.renderResults = function (results) {
    var self = this, list = this.ui.results, p = results.point || this.point;
    clear(list);
    this.nearestLayer.clearLayers();
    L.marker(p, {
      icon: L.divIcon({ className: "gs-here", html: el("span"), iconSize: [44, 44], iconAnchor: [22, 22] }),
      title: this.t("here"), interactive: false, keyboard: false
    }).addTo(this.nearestLayer);
    this.ui.status.className = "gs-hint";
    this.ui.status.textContent = results.length ? "" : this.t("noResult");
    results.forEach(function (result, i) {
      var f = result.feature, props = f.properties, layerId = result.site ? result.site.layer : props.layer;
      var kind = self.kindConfig(layerId, props.kind);
      var target = L.latLng(f.geometry.coordinates[1], f.geometry.coordinates[0]);
      L.polyline([p, target], { color: kind.colour, weight: 3, dashArray: "6 6", opacity: 0.85, interactive: false }).addTo(self.nearestLayer);
      // The list's number beside the site, so list and map are read together.
      L.marker(target, {
        icon: L.divIcon({ className: "gs-result-num", html: el("span", { text: String(i + 1) }), iconSize: [22, 22], iconAnchor: [-8, 30] }),
        interactive: false, keyboard: false, zIndexOffset: 1000
      }).addTo(self.nearestLayer);
      // Served answers carry their own open state, evaluated with the query.
      var badge = result.state ? self.stateBadge(result.state, false) : result.site ? self.openBadge(result.site) : null;
      var button = el("button", { type: "button", "data-id": f.id, "data-layer": layerId, onclick: function () {
        if (result.site) self.focus(result.site);
        else if (self.layers[layerId] && self.layers[layerId].tiled) self.focusTiled(layerId, f);
      } }, [
        el("span", { "class": "gs-num", text: String(i + 1) }),
        el("span", {}, [
          el("span", { "class": "gs-name", text: props.name }),
          el("span", { "class": "gs-meta" }, [
            // No walking time where walking makes no sense (far, or outside the district).
            self.label(kind) + " · " + formatDistance(result.distance) +
              (typeof result.walk === "number" ? " · " + self.t("walk", { m: Math.max(1, Math.round(result.walk)) }) : "") + " ",
            badge
          ])
        ])
      ]);
      list.appendChild(el("li", {}, [button]));
    });
    if (results.length) this.fitResults(results);
  };

  window.GeoServiceMap = {
    start: function (map, config, embedded) {
      var app = new App(map, config, embedded).start();
      window.gsApp = app; // for the browser tests and the curious
      return app;
    },
    wgs84ToGcj02: wgs84ToGcj02,
    gcj02ToBd09: gcj02ToBd09
  };
})();
