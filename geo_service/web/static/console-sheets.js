/* The office console's Spreadsheets screen (表格导入): pick a layer, get its
 * XLSX template, drop or pick an XLSX or CSV (UTF-8 or GBK), read the dry
 * run's report row by row, confirm, follow the import as a job, read what
 * was written.
 *
 * The file goes to the service's own import route under /admin/api (the
 * session cookie reaches it; the CSRF token rides along): the same checks
 * and the same all-or-nothing write as the API and `geo-service import`.
 * The service reads the file, never this page. Every value from the file or
 * the store is shown as text (textContent): nothing is parsed as HTML.
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
  var API = "admin/api/";
  var POLL_MS = 600;

  var TEXT = {
    zh: {
      title: "表格导入", layer: "导入到图层", template: "下载该图层的 XLSX 模板",
      drop: "把 XLSX 或 CSV 文件拖到这里（CSV 可为 UTF-8 或 GBK 编码）", pick: "选择文件",
      checking: "正在检查“{name}”……（只检查，不写入）", tooBig: "文件太大：最多 {mb} MB。",
      wrongType: "只接受 .xlsx 或 .csv 文件。", failed: "操作失败：",
      report: "检查结果：{file}", total: "共 {n} 行", ok: "可导入", warning: "有提醒", error: "有错误",
      line: "行号", status: "状态", name: "名称", action: "操作", reasons: "原因与提醒", samples: "可能对应的示例站点",
      insert: "新增", update: "更新", unchanged: "无变化", none: "—",
      confirm: "确认导入 {n} 行", confirmSkip: "确认导入 {n} 行（跳过 {m} 行有错误的）",
      nothing: "没有可导入的行：请改正表格后重新上传。", again: "重新选择文件",
      queued: "导入任务已提交，等待执行……", running: "正在导入……{p}%",
      done: "导入完成", inserted: "新增 {n} 个", updated: "更新 {n} 个", unchangedN: "无变化 {n} 个",
      toSites: "到“站点”页查看", jobFailed: "导入未完成，没有写入任何数据：",
      samplesNote: "这些行可能与示例站点是同一地点：导入后请到“示例转正”页处理示例站点。",
      toSamples: "到“示例转正”页", notes: "说明"
    },
    en: {
      title: "Spreadsheets", layer: "Import into layer", template: "Download this layer's XLSX template",
      drop: "Drop an XLSX or CSV file here (CSV in UTF-8 or GBK)", pick: "Choose a file",
      checking: "Checking “{name}”… (a dry run: nothing is written)", tooBig: "File too large: at most {mb} MB.",
      wrongType: "Only .xlsx or .csv files.", failed: "Failed: ",
      report: "Check of {file}", total: "{n} rows", ok: "ready", warning: "with warnings", error: "with errors",
      line: "Row", status: "Status", name: "Name", action: "Action", reasons: "Reasons and warnings", samples: "Probable sample sites",
      insert: "insert", update: "update", unchanged: "unchanged", none: "—",
      confirm: "Import {n} rows", confirmSkip: "Import {n} rows (skip {m} rows with errors)",
      nothing: "No row can be imported: correct the sheet and upload it again.", again: "Choose another file",
      queued: "Import queued…", running: "Importing… {p}%",
      done: "Import finished", inserted: "{n} inserted", updated: "{n} updated", unchangedN: "{n} unchanged",
      toSites: "See them on the Sites screen", jobFailed: "The import did not finish; nothing was written: ",
      samplesNote: "These rows are probably the same place as sample sites: after the import, deal with the samples on the Sample-to-real screen.",
      toSamples: "Sample to real", notes: "Notes"
    }
  };
  var T = TEXT[LANG];
  var t = C.words(TEXT);
  function label(item) { return (item && (LANG === "en" ? item.en : item.zh)) || ""; }
  function suffix(path) { return LANG === "en" ? path + (path.indexOf("?") < 0 ? "?" : "&") + "lang=en" : path; }

  var MEDIA = {
    xlsx: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    csv: "text/csv"
  };
  function mediaOf(file) {
    var match = /\.([A-Za-z]+)$/.exec(file.name || "");
    return match ? MEDIA[match[1].toLowerCase()] : undefined;
  }

  // -- layout ------------------------------------------------------------------------------

  var main = document.getElementById("console-main");
  var layerSelect = el("select", { id: "sheet-layer" });
  DATA.layers.forEach(function (layer) { layerSelect.appendChild(el("option", { value: layer.id, text: label(layer) })); });
  var templateLink = el("a", { id: "sheet-template", text: t("template") });
  var fileInput = el("input", { id: "sheet-file", type: "file", accept: ".xlsx,.csv,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" });
  var drop = el("div", { id: "sheet-drop", class: "sheet-drop", tabindex: "0" }, [
    el("p", { text: t("drop") }),
    el("label", { class: "button", for: "sheet-file", text: t("pick") }),
    fileInput
  ]);
  var status = el("p", { id: "sheet-status", class: "sheet-status", role: "status", "aria-live": "polite" });
  var reportBox = el("section", { id: "sheet-report", class: "sheet-report", hidden: "" });
  var jobBox = el("section", { id: "sheet-job", class: "sheet-job", hidden: "" });
  main.appendChild(el("h1", { text: t("title") }));
  main.appendChild(el("div", { class: "sheet-bar" }, [
    el("label", { for: "sheet-layer", text: t("layer") }), layerSelect, templateLink
  ]));
  main.appendChild(drop);
  main.appendChild(status);
  main.appendChild(reportBox);
  main.appendChild(jobBox);

  function showTemplate() {
    templateLink.setAttribute("href", ROOT + "collections/" + encodeURIComponent(layerSelect.value) + "/template.xlsx");
  }
  layerSelect.addEventListener("change", function () { showTemplate(); reset(); });
  showTemplate();

  var state = { file: null, media: null, layer: null };

  function reset() {
    state.file = null;
    reportBox.hidden = true; clear(reportBox);
    jobBox.hidden = true; clear(jobBox);
    status.textContent = "";
    status.className = "sheet-status";
  }
  function fail(text) {
    status.textContent = text;
    status.className = "sheet-status warning";
  }

  // -- picking a file ----------------------------------------------------------------------

  function take(file) {
    reset();
    if (!file) return;
    var media = mediaOf(file);
    if (!media) { fail(t("wrongType")); return; }
    if (DATA.max_bytes && file.size > DATA.max_bytes) { fail(t("tooBig", { mb: Math.floor(DATA.max_bytes / 1048576) })); return; }
    state.file = file; state.media = media; state.layer = layerSelect.value;
    status.textContent = t("checking", { name: file.name });
    importFile(true, false).then(function (answer) {
      if (!answer.ok) { fail(t("failed") + problemText(answer)); showReport(answer.body && answer.body.report, false); return; }
      status.textContent = "";
      showReport(answer.body, true);
    }).catch(function (error) { fail(t("failed") + error); });
  }
  fileInput.addEventListener("change", function () { take(fileInput.files[0]); fileInput.value = ""; });
  ["dragenter", "dragover"].forEach(function (name) {
    drop.addEventListener(name, function (event) { event.preventDefault(); drop.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    drop.addEventListener(name, function () { drop.classList.remove("over"); });
  });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    var files = event.dataTransfer && event.dataTransfer.files;
    take(files && files[0]);
  });

  function importFile(dryRun, skipInvalid) {
    var query = "?dry_run=" + dryRun + "&skip_invalid=" + skipInvalid + "&filename=" + encodeURIComponent(state.file.name.slice(-120));
    var headers = { "Content-Type": state.media };
    if (!dryRun) headers.Prefer = "respond-async"; // a job to follow, not a request held open
    return request("POST", API + "collections/" + encodeURIComponent(state.layer) + "/import" + query, state.file, headers);
  }

  // -- the dry run's report ----------------------------------------------------------------

  function reportTable(report) {
    var head = el("tr", {}, [t("line"), t("status"), t("name"), t("action"), t("reasons"), t("samples")].map(function (h) { return el("th", { scope: "col", text: h }); }));
    var body = el("tbody");
    report.rows.forEach(function (row) {
      var reasons = el("ul", { class: "reasons" });
      (LANG === "en" ? row.reasons : (row.reasons_zh || row.reasons)).forEach(function (reason) {
        reasons.appendChild(el("li", { text: reason }));
      });
      var samples = el("td", { class: "samples" });
      (row.same_as_samples || []).forEach(function (id) { samples.appendChild(el("div", { text: id })); });
      body.appendChild(el("tr", { class: "row-" + row.status.toLowerCase(), "data-line": String(row.line) }, [
        el("td", { text: String(row.line) }),
        el("td", { class: "status", text: T[row.status.toLowerCase()] || row.status }),
        el("td", { text: row.name || "" }),
        el("td", { text: row.action ? (T[row.action] || row.action) : T.none }),
        el("td", {}, [reasons]),
        samples
      ]));
    });
    return el("div", { class: "table-box" }, [el("table", { id: "report-table", class: "report-table" }, [el("thead", {}, [head]), body])]);
  }

  function showReport(report, canImport) {
    clear(reportBox);
    if (!report || !report.rows) return;
    reportBox.hidden = false;
    var counts = report.counts || {};
    var errors = counts.error || 0;
    var writable = (counts.OK || 0) + (counts.warning || 0);
    reportBox.appendChild(el("h2", { text: t("report", { file: state.file ? state.file.name : "" }) }));
    reportBox.appendChild(el("p", { id: "report-totals", class: "totals" }, [
      el("span", { text: t("total", { n: report.rows.length }) }),
      el("span", { class: "ok", text: T.ok + " " + (counts.OK || 0) }),
      el("span", { class: "warning", text: T.warning + " " + (counts.warning || 0) }),
      el("span", { class: "error", text: T.error + " " + errors })
    ]));
    var notes = (report.notes || []).concat(report.summary || []);
    if (notes.length) {
      var list = el("ul", { id: "report-notes", class: "notes" });
      notes.forEach(function (note) { list.appendChild(el("li", { text: note })); });
      reportBox.appendChild(list);
    }
    if (report.rows.some(function (row) { return row.status !== "error" && (row.same_as_samples || []).length; })) {
      reportBox.appendChild(el("p", { id: "report-samples", class: "sample-note" }, [
        el("span", { text: t("samplesNote") + " " }),
        el("a", { href: suffix("/admin/samples"), text: t("toSamples") })
      ]));
    }
    reportBox.appendChild(reportTable(report));
    if (!canImport) return;
    var actions = el("div", { class: "sheet-actions" });
    if (writable > 0) {
      var confirm = el("button", { id: "sheet-confirm", class: "primary", type: "button",
        text: errors ? t("confirmSkip", { n: writable, m: errors }) : t("confirm", { n: writable }) });
      confirm.addEventListener("click", function () { commit(errors > 0); });
      actions.appendChild(confirm);
    } else {
      actions.appendChild(el("p", { class: "warning", text: t("nothing") }));
    }
    var again = el("button", { type: "button", text: t("again") });
    again.addEventListener("click", function () { reset(); fileInput.click(); });
    actions.appendChild(again);
    reportBox.appendChild(actions);
  }

  // -- the import as a job -----------------------------------------------------------------

  function commit(skipInvalid) {
    Array.prototype.forEach.call(reportBox.querySelectorAll("button"), function (b) { b.disabled = true; });
    clear(jobBox);
    jobBox.hidden = false;
    var bar = el("progress", { id: "job-progress", max: "100", value: "0" });
    var words = el("p", { id: "job-status", role: "status", "aria-live": "polite", text: t("queued") });
    jobBox.appendChild(bar);
    jobBox.appendChild(words);
    importFile(false, skipInvalid).then(function (answer) {
      if (!answer.ok || !answer.body || !answer.body.jobID) { words.textContent = t("failed") + problemText(answer); return; }
      follow(answer.body.jobID, bar, words);
    }).catch(function (error) { words.textContent = t("failed") + error; });
  }

  function follow(jobId, bar, words) {
    request("GET", API + "jobs/" + encodeURIComponent(jobId)).then(function (answer) {
      if (!answer.ok) { words.textContent = t("failed") + problemText(answer); return; }
      var job = answer.body;
      bar.value = job.progress || 0;
      if (job.status === "accepted") words.textContent = t("queued");
      if (job.status === "running") words.textContent = t("running", { p: job.progress || 0 });
      if (job.status === "accepted" || job.status === "running") {
        window.setTimeout(function () { follow(jobId, bar, words); }, POLL_MS);
        return;
      }
      request("GET", API + "jobs/" + encodeURIComponent(jobId) + "/results").then(function (result) {
        if (job.status !== "successful" || !result.ok) {
          bar.value = 0;
          words.textContent = t("jobFailed") + problemText(result);
          if (result.body && result.body.report) showReport(result.body.report, false);
          return;
        }
        bar.value = 100;
        showResult(result.body, words);
      });
    }).catch(function (error) { words.textContent = t("failed") + error; });
  }

  function showResult(report, words) {
    words.textContent = t("done");
    var written = (report.written || {})[report.collection] || { inserted: 0, updated: 0, unchanged: 0 };
    jobBox.appendChild(el("p", { id: "job-result", class: "result" }, [
      el("strong", { text: t("inserted", { n: written.inserted }) }), el("span", { text: " · " }),
      el("strong", { text: t("updated", { n: written.updated }) }), el("span", { text: " · " }),
      el("span", { text: t("unchangedN", { n: written.unchanged }) })
    ]));
    jobBox.appendChild(el("p", {}, [el("a", { id: "to-sites", href: suffix("/admin/sites"), text: t("toSites") })]));
    showReport(report, false);
  }
})();
