/* The console's Planning & printing screen. Coverage: the office's question
 * (reach in metres, layers, p new sites) runs the coverage-report and
 * site-recommendation processes as jobs, followed to the end; then the
 * per-town table (shares as percentages, the 2022 items) and the suggested
 * sites on a map, and the same as a workbook. Printing: the district atlas
 * or one town's pages as a PDF job, with a link when it is done. */
(function () {
  "use strict";

  var C = window.ConsoleScreen;
  var el = C.el;
  var DATA = C.data;
  var en = C.lang === "en";
  var t = C.words({
    zh: {
      title: "规划与打印", coverage: "覆盖分析与选址", radius: "服务半径（米）", layers: "计入的图层", p: "新站点数量 p",
      run: "运行分析", report: "覆盖分析", recommendation: "选址建议", queued: "{what}：排队中……", running: "{what}：{n}%",
      done: "{what}：完成", failed: "{what}失败：", pickLayer: "请至少选择一个图层。",
      town: "镇街", facilities: "设施数", population: "人口", popShare: "覆盖人口比例", areaShare: "覆盖面积比例",
      median: "步行距离中位数（米）", allMet: "全部达标", yes: "✓ 是", no: "✗ 否",
      xlsx: "下载覆盖分析表（XLSX）", suggested: "建议新站点 {n}：{town}，新增覆盖约 {gain} 人",
      before: "覆盖人口：{before} → {after}（{shareBefore} → {shareAfter}）",
      existing: "现有设施", printing: "打印地图", what: "内容", atlas: "全区地图册（所有镇街）", size: "纸张",
      print: "生成 PDF", pdf: "PDF", download: "下载 PDF：{name}", note: "半径 {r} 米；{distance}"
    },
    en: {
      title: "Planning & printing", coverage: "Coverage and new sites", radius: "Reach (metres)", layers: "Layers counted", p: "New sites p",
      run: "Run", report: "Coverage report", recommendation: "Site recommendation", queued: "{what}: queued…", running: "{what}: {n}%",
      done: "{what}: done", failed: "{what} failed: ", pickLayer: "Pick at least one layer.",
      town: "Town", facilities: "Facilities", population: "People", popShare: "People covered", areaShare: "Area covered",
      median: "Median walk (m)", allMet: "All items met", yes: "✓ yes", no: "✗ no",
      xlsx: "Download the coverage workbook (XLSX)", suggested: "New site {n}: {town}, about {gain} more people covered",
      before: "People covered: {before} → {after} ({shareBefore} → {shareAfter})",
      existing: "Existing facilities", printing: "Printed maps", what: "What", atlas: "District atlas (every town)", size: "Paper",
      print: "Make the PDF", pdf: "PDF", download: "Download the PDF: {name}", note: "Reach {r} m; {distance}"
    }
  });

  var main = document.getElementById("console-main");
  main.appendChild(el("h1", { text: t("title") }));

  // -- coverage: the question -------------------------------------------------------------

  var radius = el("input", { type: "number", id: "radius", min: 50, max: 20000, step: 50, value: 1000, required: true });
  var p = el("input", { type: "number", id: "p", min: 1, max: 10, step: 1, value: 2, required: true });
  var layerBoxes = DATA.layers.map(function (layer) {
    var box = el("input", { type: "checkbox", value: layer.id, id: "layer-" + layer.id, checked: true });
    return { box: box, label: el("label", { class: "choice", for: "layer-" + layer.id }, [box, en ? layer.en : layer.zh]) };
  });
  var runButton = el("button", { type: "submit", class: "primary", id: "run-coverage", text: t("run") });
  var coverageForm = el("form", { id: "coverage-form", class: "screen-bar" }, [
    el("label", { for: "radius", text: t("radius") }), radius,
    el("label", { for: "p", text: t("p") }), p,
    el("fieldset", { class: "choices" }, [el("legend", { text: t("layers") })].concat(layerBoxes.map(function (x) { return x.label; }))),
    runButton
  ]);
  var coverageProgress = el("progress", { id: "coverage-progress", max: 100, value: 0, hidden: true });
  var coverageStatus = el("p", { id: "coverage-status", class: "screen-status", role: "status", "aria-live": "polite" });
  var coverageNote = el("p", { id: "coverage-note", class: "sample-note", hidden: true });
  var mapBox = el("div", { id: "planning-map", class: "planning-map" });
  var summary = el("p", { id: "recommendation-summary", class: "muted" });
  var suggestions = el("ol", { id: "suggested-sites", class: "suggestions" });
  var tableBox = el("div", { id: "coverage-result", class: "table-box" });
  var xlsx = el("a", { id: "coverage-xlsx", class: "button-link", hidden: true, text: t("xlsx") });
  main.appendChild(el("section", { class: "screen-section" }, [
    el("h2", { text: t("coverage") }), coverageForm, coverageProgress, coverageStatus, coverageNote,
    el("div", { class: "planning-body" }, [mapBox, el("div", { class: "planning-side" }, [summary, suggestions, xlsx])]),
    tableBox
  ]));

  // -- the map: towns, existing facilities, suggested sites --------------------------------

  var map = L.map(mapBox, { zoomControl: true, attributionControl: false }).setView([36.80, 118.05], 11);
  var existingLayer = L.layerGroup().addTo(map);
  var suggestedLayer = L.layerGroup().addTo(map);
  C.request("GET", "collections/towns/items?limit=1000").then(function (answer) {
    if (!answer.ok) return;
    var towns = L.geoJSON(answer.body, { style: function () { return { color: "#555", weight: 1, fillColor: "#cfe3f5", fillOpacity: 0.35 }; }, interactive: false });
    towns.addTo(map).bringToBack();
    map.fitBounds(towns.getBounds(), { padding: [10, 10] });
  });

  function chosenLayers() { return layerBoxes.filter(function (x) { return x.box.checked; }).map(function (x) { return x.box.value; }); }

  function progressTo(node, words, what) {
    return function (n, state) {
      node.hidden = false;
      node.value = n;
      words.textContent = state === "accepted" ? t("queued", { what: what }) : t("running", { what: what, n: n });
    };
  }
  function results(job) {
    return C.request("GET", "admin/api/jobs/" + encodeURIComponent(job.jobID) + "/results").then(function (answer) {
      if (!answer.ok) throw new Error(C.problemText(answer));
      return answer.body;
    });
  }

  function townTable(report) {
    var names = C.townNames();
    var header = [t("town"), t("facilities"), t("population"), t("popShare"), t("areaShare"), t("median")]
      .concat(report.items.map(function (item) { return item.name; }), [t("allMet")]);
    var rows = report.towns.map(function (town) {
      var cells = [
        el("th", { scope: "row", text: town.town_name || names[town.town_code] || town.town_code }),
        el("td", { text: String(town.facilities) }),
        el("td", { text: Math.round(town.population).toLocaleString(en ? "en" : "zh-CN") }),
        el("td", { class: "share", "data-key": "population_covered_share", text: C.percent(town.population_covered_share) }),
        el("td", { class: "share", text: C.percent(town.area_covered_share) }),
        el("td", { text: town.median_distance_m === null ? "—" : String(Math.round(town.median_distance_m)) })
      ];
      report.items.forEach(function (item) {
        var met = town["has_" + item.item];
        cells.push(el("td", { class: met ? "met" : "unmet", text: (met ? "✓ " : "✗ ") + town[item.item + "_count"] }));
      });
      cells.push(el("td", { class: town.all_met ? "met" : "unmet", text: town.all_met ? t("yes") : t("no") }));
      return el("tr", { "data-town": town.town_code }, cells);
    });
    return el("table", { id: "coverage-table", class: "data-table" }, [
      el("thead", {}, [el("tr", {}, header.map(function (h) { return el("th", { scope: "col", text: h }); }))]),
      el("tbody", {}, rows)
    ]);
  }

  function showReport(report) {
    C.clear(tableBox);
    // The items' names, in the report's order (compliance columns: has_<item>).
    report.items = DATA.items;
    tableBox.appendChild(townTable(report));
    // The report says each note in both languages; the screen shows its own.
    var samples = report.sample_notes ? report.sample_notes[en ? "en" : "zh"] : "";
    coverageNote.className = "sample-note warning";
    coverageNote.textContent = samples + " " + t("note", { r: Math.round(report.radius_m), distance: en ? report.distance : report.distance_zh });
    coverageNote.hidden = false;
    existingLayer.clearLayers();
    report.sites.forEach(function (site) {
      L.circleMarker([site.lat, site.lon], { radius: 4, color: "#1f5fa8", weight: 1, fillOpacity: 0.8 })
        .bindTooltip(String(site.name || site.id)).addTo(existingLayer);
    });
  }

  function showRecommendation(result) {
    C.clear(suggestions);
    suggestedLayer.clearLayers();
    summary.textContent = t("before", {
      before: result.covered_before.toLocaleString(), after: result.covered_after.toLocaleString(),
      shareBefore: C.percent(result.covered_share_before), shareAfter: C.percent(result.covered_share_after)
    });
    result.sites.forEach(function (site, index) {
      var words = t("suggested", { n: index + 1, town: site.town_name, gain: site.gain.toLocaleString() });
      suggestions.appendChild(el("li", { class: "suggested", text: words }));
      L.marker([site.lat, site.lon], { title: words, keyboard: true, alt: words }).addTo(suggestedLayer);
    });
    // The map keeps the whole district in view: where the new sites lie among the towns is the point.
  }

  coverageForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var layers = chosenLayers();
    if (!layers.length) { coverageStatus.textContent = t("pickLayer"); return; }
    var question = { layers: layers, radius: Number(radius.value) };
    var count = parseInt(p.value, 10);
    runButton.disabled = true;
    xlsx.hidden = true;
    // One after the other: the machine is small, and the second reuses the first's demand grid.
    C.runJob("coverage-report", question, progressTo(coverageProgress, coverageStatus, t("report")))
      .then(results)
      .then(function (report) {
        showReport(report);
        return C.runJob("site-recommendation", Object.assign({ p: count }, question), progressTo(coverageProgress, coverageStatus, t("recommendation")));
      }, function (error) { throw new Error(t("failed", { what: t("report") }) + error.message); })
      .then(results)
      .then(function (result) {
        showRecommendation(result);
        coverageStatus.textContent = t("done", { what: t("report") + " · " + t("recommendation") });
        xlsx.setAttribute("href", C.root + "admin/api/coverage.xlsx?layers=" + encodeURIComponent(layers.join(",")) +
          "&radius=" + encodeURIComponent(question.radius) + "&p=" + count + (en ? "&lang=en" : ""));
        xlsx.hidden = false;
      })
      .catch(function (error) {
        var text = error.message;
        coverageStatus.textContent = text.indexOf(t("report")) >= 0 ? text : t("failed", { what: t("recommendation") }) + text;
      })
      .then(function () { runButton.disabled = false; });
  });

  // -- printing ---------------------------------------------------------------------------------

  var target = el("select", { id: "print-target" }, [el("option", { value: "", text: t("atlas") })].concat(
    DATA.towns.map(function (town) { return el("option", { value: town.code, text: town.name + "（" + town.code + "）" }); })));
  var size = el("select", { id: "print-size" }, [el("option", { value: "A4", text: "A4" }), el("option", { value: "A3", text: "A3" })]);
  var printButton = el("button", { type: "submit", class: "primary", id: "print-run", text: t("print") });
  var printForm = el("form", { id: "print-form", class: "screen-bar" }, [
    el("label", { for: "print-target", text: t("what") }), target,
    el("label", { for: "print-size", text: t("size") }), size, printButton
  ]);
  var printProgress = el("progress", { id: "print-progress", max: 100, value: 0, hidden: true });
  var printStatus = el("p", { id: "print-status", class: "screen-status", role: "status", "aria-live": "polite" });
  var printLink = el("p", { id: "print-result" });
  main.appendChild(el("section", { class: "screen-section" }, [el("h2", { text: t("printing") }), printForm, printProgress, printStatus, printLink]));

  printForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var code = target.value;
    var inputs = code ? { code: code, size: size.value } : { size: size.value };
    var name = (code ? "town-" + code : "atlas") + "-" + size.value + ".pdf";
    printButton.disabled = true;
    C.clear(printLink);
    C.runJob(code ? "print-town" : "print-atlas", inputs, progressTo(printProgress, printStatus, t("pdf")))
      .then(function (job) {
        printStatus.textContent = t("done", { what: t("pdf") });
        printLink.appendChild(el("a", { id: "print-download", class: "button-link", href: C.root + "admin/api/jobs/" + encodeURIComponent(job.jobID) + "/results", download: name, text: t("download", { name: name }) }));
      })
      .catch(function (error) { printStatus.textContent = t("failed", { what: t("pdf") }) + error.message; })
      .then(function () { printButton.disabled = false; });
  });
})();
