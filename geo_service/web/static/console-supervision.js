/* The console's Supervision (督办) screen: as of a date (and compared with an
 * earlier one), each town's items of the 2022 opinion met ✓ or not ✗ with
 * the open sites counted, progress per responsible unit, what changed, the
 * sample-site note, and the same as a workbook. An editor's towns only:
 * the service leaves the others out. */
(function () {
  "use strict";

  var C = window.ConsoleScreen;
  var el = C.el;
  var DATA = C.data;
  var t = C.words({
    zh: {
      title: "督办", asOf: "截至日期", since: "对比日期（可选）", show: "查看", xlsx: "下载督办表（XLSX）",
      loading: "正在加载……", failed: "加载失败：", heading: "截至 {date}（北京时间当日 24:00）",
      town: "镇街", itemsMet: "达标项", samples: "其中示例站点", allMet: "全部达标",
      unitsTitle: "责任单位进度", unit: "责任单位", open: "正常开放", planned: "筹建中", suspended: "暂停服务", total: "合计",
      townsTitle: "各镇街达标情况（2022年意见）", changesTitle: "{since} 至 {date} 的变化", noChanges: "两个日期之间没有变化。",
      met: "达标", notMet: "未达标", count: "{n} 个", change: "{town} · {item}：{before} → {after}",
      unitChange: "{unit} · {status}：{before} → {after}", sinceAfter: "对比日期应早于截至日期。",
      legend: "✓ 达标 ✗ 未达标；数字为正常开放的站点数。"
    },
    en: {
      title: "Supervision", asOf: "As of", since: "Compare with (optional)", show: "Show", xlsx: "Download workbook (XLSX)",
      loading: "Loading…", failed: "Could not load: ", heading: "As of {date} (end of day, Beijing time)",
      town: "Town", itemsMet: "Items met", samples: "Sample sites", allMet: "All met",
      unitsTitle: "Progress per responsible unit", unit: "Responsible unit", open: "Open", planned: "Planned", suspended: "Suspended", total: "Total",
      townsTitle: "Items of the 2022 opinion per town", changesTitle: "Changes from {since} to {date}", noChanges: "Nothing changed between the two dates.",
      met: "met", notMet: "not met", count: "{n}", change: "{town} · {item}: {before} → {after}",
      unitChange: "{unit} · {status}: {before} → {after}", sinceAfter: "The comparison date must be before the as-of date.",
      legend: "✓ met ✗ not met; the number is the open sites counted."
    }
  });

  var main = document.getElementById("console-main");
  var asOf = el("input", { type: "date", id: "as-of", value: DATA.today, max: DATA.today, required: true });
  var since = el("input", { type: "date", id: "since", max: DATA.today });
  var show = el("button", { type: "submit", class: "primary", id: "show", text: t("show") });
  var form = el("form", { class: "screen-bar", id: "supervision-form" }, [
    el("label", { for: "as-of", text: t("asOf") }), asOf,
    el("label", { for: "since", text: t("since") }), since,
    show
  ]);
  var xlsx = el("a", { id: "supervision-xlsx", class: "button-link", text: t("xlsx") });
  var status = el("p", { id: "supervision-status", class: "screen-status", role: "status", "aria-live": "polite" });
  var note = el("p", { id: "sample-note", class: "sample-note", hidden: true });
  var result = el("div", { id: "supervision-result" });
  main.appendChild(el("h1", { text: t("title") }));
  main.appendChild(form);
  main.appendChild(el("p", {}, [xlsx]));
  main.appendChild(status);
  main.appendChild(note);
  main.appendChild(result);

  function query() {
    var parts = ["as_of=" + encodeURIComponent(asOf.value || DATA.today)];
    if (since.value) parts.push("since=" + encodeURIComponent(since.value));
    return parts.join("&");
  }
  function mark(met, count) { return (met ? "✓ " : "✗ ") + t("count", { n: count }); }
  function head(labels) {
    return el("thead", {}, [el("tr", {}, labels.map(function (label) { return el("th", { scope: "col", text: label }); }))]);
  }
  function box(table) { return el("div", { class: "table-box" }, [table]); }

  function townsTable(report) {
    var rows = report.towns.map(function (town) {
      var cells = [el("th", { scope: "row", text: town.town_name })];
      report.items.forEach(function (item) {
        var met = town.meets[item.item];
        cells.push(el("td", { class: met ? "met" : "unmet", "data-item": item.item, title: met ? t("met") : t("notMet"), text: mark(met, town.counts[item.item]) }));
      });
      cells.push(el("td", { class: town.all_met ? "met" : "unmet", text: town.items_met + " / " + report.items.length }));
      cells.push(el("td", { text: String(town.sample_sites_counted) }));
      return el("tr", { "data-town": town.town_code }, cells);
    });
    var labels = [t("town")].concat(report.items.map(function (item) { return item.name; }), [t("itemsMet"), t("samples")]);
    return box(el("table", { id: "towns-table", class: "data-table" }, [head(labels), el("tbody", {}, rows)]));
  }

  function unitsTable(report) {
    var rows = report.units.map(function (unit) {
      return el("tr", {}, [
        el("th", { scope: "row", text: unit.responsible_unit }),
        el("td", { text: String(unit.open) }), el("td", { text: String(unit.planned) }),
        el("td", { text: String(unit.suspended) }), el("td", { text: String(unit.total) }),
        el("td", { text: String(unit.sample_sites) })
      ]);
    });
    return box(el("table", { id: "units-table", class: "data-table" }, [
      head([t("unit"), t("open"), t("planned"), t("suspended"), t("total"), t("samples")]), el("tbody", {}, rows)
    ]));
  }

  function changesList(report) {
    var changes = report.changes;
    var items = changes.towns.map(function (c) {
      return el("li", { "data-town": c.town_code, "data-item": c.item, class: c.met_after ? "met" : "unmet", text: t("change", {
        town: c.town_name, item: c.item_name,
        before: mark(c.met_before, c.count_before), after: mark(c.met_after, c.count_after)
      }) });
    }).concat(changes.units.map(function (c) {
      return el("li", { text: t("unitChange", { unit: c.responsible_unit, status: t(c.status), before: c.before, after: c.after }) });
    }));
    if (!items.length) return el("p", { id: "changes", text: t("noChanges") });
    return el("ul", { id: "changes", class: "changes-list" }, items);
  }

  function load() {
    if (since.value && asOf.value && since.value > asOf.value) { status.textContent = t("sinceAfter"); return; }
    xlsx.setAttribute("href", C.root + "admin/api/supervision.xlsx?" + query());
    status.textContent = t("loading");
    show.disabled = true;
    C.request("GET", "admin/api/supervision?" + query()).then(function (answer) {
      show.disabled = false;
      C.clear(result);
      if (!answer.ok) { status.textContent = t("failed") + C.problemText(answer); return; }
      var report = answer.body;
      status.textContent = t("heading", { date: report.as_of });
      note.textContent = report.samples.note;
      note.hidden = false;
      note.className = report.samples.sites ? "sample-note warning" : "sample-note";
      result.appendChild(el("section", { class: "screen-section" }, [
        el("h2", { text: t("townsTitle") }), el("p", { class: "muted", text: t("legend") }), townsTable(report)
      ]));
      if (report.changes) {
        result.appendChild(el("section", { class: "screen-section" }, [
          el("h2", { text: t("changesTitle", { since: report.since.date, date: report.as_of }) }), changesList(report)
        ]));
      }
      result.appendChild(el("section", { class: "screen-section" }, [el("h2", { text: t("unitsTitle") }), unitsTable(report)]));
    });
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); load(); });
  load();
})();
