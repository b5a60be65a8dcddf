/* The console's History screen: one site's timeline, newest first (when,
 * who, what was done, each field before -> after, a move in metres), and
 * "restore this version" with the site's current ETag. The service decides
 * who may read and restore (an editor: their towns only). */
(function () {
  "use strict";

  var C = window.ConsoleScreen;
  var el = C.el;
  var DATA = C.data;
  var t = C.words({
    zh: {
      title: "站点历史", pick: "请先在“站点”页面选择一个站点：每行都有“历史”链接。", toSites: "前往站点页面",
      loading: "正在加载……", failed: "加载失败：", versions: "共 {n} 个版本（最新在前）",
      current: "当前版本", deleted: "这个站点已被删除；可以恢复到删除前的某个版本。",
      when: "时间（北京时间）", who: "操作人", action: "操作", field: "项目", before: "修改前", after: "修改后",
      moved: "位置移动了 {m} 米", noFieldChange: "没有项目变化", restore: "恢复到这个版本",
      confirm: "确定把“{name}”恢复到 {when} 的版本吗？这会作为一次新的修改记录在您的名下。",
      restoring: "正在恢复……", restored: "已恢复到 {when} 的版本（新版本由您保存）。",
      conflict: "有人刚修改了这个站点，已重新加载历史，请确认后再恢复。",
      forbidden: "您无权恢复这个站点。", empty: "（空）", yes: "是", no: "否", town: "所在镇街：{town}", back: "返回站点",
      actions: { seed: "初始数据", create: "新增", replace: "修改", patch: "修改", upsert: "导入更新", "import": "导入", "delete": "删除", revert: "恢复版本", restore: "恢复已删除站点", load: "批量导入" },
      position: "位置"
    },
    en: {
      title: "Site history", pick: "Pick a site on the Sites screen first: each row has a “History” link.", toSites: "Go to Sites",
      loading: "Loading…", failed: "Could not load: ", versions: "{n} versions (newest first)",
      current: "Current version", deleted: "This site was deleted; it can be restored to a version before that.",
      when: "When (Beijing time)", who: "By", action: "Action", field: "Field", before: "Before", after: "After",
      moved: "Moved {m} m", noFieldChange: "No field changed", restore: "Restore this version",
      confirm: "Restore “{name}” to the version of {when}? This is saved as a new change in your name.",
      restoring: "Restoring…", restored: "Restored to the version of {when} (saved as a new version by you).",
      conflict: "Someone just changed this site: the history was reloaded, check it and restore again.",
      forbidden: "You may not restore this site.", empty: "(empty)", yes: "yes", no: "no", town: "Town: {town}", back: "Back to Sites",
      actions: { seed: "Initial data", create: "Created", replace: "Changed", patch: "Changed", upsert: "Import update", "import": "Imported", "delete": "Deleted", revert: "Restored a version", restore: "Restored after deletion", load: "Bulk load" },
      position: "Position"
    }
  });
  var en = C.lang === "en";
  var site = DATA.site || {};
  var layer = (DATA.layers || []).filter(function (l) { return l.id === site.layer; })[0] || { properties: [], kinds: {} };
  var fields = {};
  layer.properties.forEach(function (p) { fields[p.name] = p; });

  var main = document.getElementById("console-main");
  var heading = el("h1", { id: "history-title", text: t("title") });
  var status = el("p", { id: "history-status", class: "screen-status", role: "status", "aria-live": "polite" });
  var list = el("ol", { id: "history-list", class: "timeline" });
  main.appendChild(heading);
  main.appendChild(status);
  main.appendChild(list);

  if (!site.layer || !site.id) {
    status.textContent = t("pick");
    main.appendChild(el("p", {}, [el("a", { href: C.root + "admin/sites" + (en ? "?lang=en" : ""), text: t("toSites") })]));
    return;
  }
  var itemPath = "admin/api/collections/" + encodeURIComponent(site.layer) + "/items/" + encodeURIComponent(site.id);

  function fieldLabel(name) {
    if (name === "geometry") return t("position");
    var spec = fields[name];
    return spec ? ((en ? spec.en : spec.zh) || name) : name;
  }
  // A value as the office reads it: labels for coded values, 是/否, lists joined.
  function valueText(name, value) {
    if (value === null || value === undefined || value === "") return t("empty");
    if (typeof value === "boolean") return value ? t("yes") : t("no");
    if (name === "kind" && layer.kinds[value]) return (en ? layer.kinds[value].en : layer.kinds[value].zh) || String(value);
    var spec = fields[name];
    var coded = function (v) {
      var hit = spec && (spec.values || []).filter(function (triple) { return triple[0] === v; })[0];
      return hit ? (en ? hit[2] : hit[1]) || String(v) : String(v);
    };
    if (Array.isArray(value)) return value.map(coded).join(en ? ", " : "、");
    if (typeof value === "object") return JSON.stringify(value);
    return coded(value);
  }
  function who(actor) { return String(actor || "").replace(/^user:/, ""); }

  function changesTable(version) {
    var rows = version.changes.filter(function (c) { return c.field !== "geometry"; }).map(function (change) {
      return el("tr", { "data-field": change.field }, [
        el("th", { scope: "row", text: fieldLabel(change.field) }),
        el("td", { class: "before", text: valueText(change.field, change.before) }),
        el("td", { class: "after", text: valueText(change.field, change.after) })
      ]);
    });
    var parts = [];
    if (version.moved_m !== null && version.moved_m !== undefined) {
      parts.push(el("p", { class: "moved", text: t("moved", { m: version.moved_m }) }));
    }
    if (rows.length) {
      parts.push(el("div", { class: "table-box" }, [el("table", { class: "changes" }, [
        el("thead", {}, [el("tr", {}, [el("th", { scope: "col", text: t("field") }), el("th", { scope: "col", text: t("before") }), el("th", { scope: "col", text: t("after") })])]),
        el("tbody", {}, rows)
      ])]));
    } else if (!parts.length) {
      parts.push(el("p", { class: "muted", text: t("noFieldChange") }));
    }
    return parts;
  }

  function render(body, notice) {
    C.clear(list);
    heading.textContent = t("title") + " · " + (body.name || body.id);
    var towns = C.townNames();
    var lines = [t("versions", { n: body.versions.length }), t("town", { town: body.town_name || towns[body.town_code] || body.town_code || "" })];
    if (body.deleted) lines.push(t("deleted"));
    status.textContent = (notice ? notice + " " : "") + lines.join(" · ");
    body.versions.forEach(function (version, index) {
      var when = C.localTime(version.at);
      var isCurrent = index === 0 && !body.deleted;
      var actionWord = t("actions")[version.action] || version.action;
      var head = el("div", { class: "version-head" }, [
        el("strong", { class: "when", text: when }),
        el("span", { class: "who", text: t("who") + "：" + who(version.actor) }),
        el("span", { class: "action action-" + version.action, text: actionWord }),
        isCurrent ? el("span", { class: "badge", text: t("current") }) : null
      ]);
      var item = el("li", { class: "version", "data-version": version.version }, [head].concat(changesTable(version)));
      if (version.restorable && !isCurrent) {
        var button = el("button", { type: "button", class: "restore", "data-version": version.version, text: t("restore") });
        button.addEventListener("click", function () { restore(body, version, when, button); });
        item.appendChild(el("div", { class: "version-actions" }, [button]));
      }
      list.appendChild(item);
    });
  }

  function load(notice) {
    status.textContent = t("loading");
    return C.request("GET", itemPath + "/history").then(function (answer) {
      if (!answer.ok) { status.textContent = t("failed") + C.problemText(answer); return; }
      render(answer.body, notice);
    });
  }

  function restore(body, version, when, button) {
    if (!window.confirm(t("confirm", { name: body.name || body.id, when: when }))) return;
    button.disabled = true;
    status.textContent = t("restoring");
    // The current ETag from the history just read: a change made since is a 412, not overwritten.
    var headers = { "If-Match": body.etag || "*" };
    C.request("POST", itemPath + "/history/" + encodeURIComponent(version.version) + "/restore", undefined, headers).then(function (answer) {
      if (answer.ok) return load(t("restored", { when: when }));
      if (answer.status === 412) return load(t("conflict"));
      button.disabled = false;
      status.textContent = answer.status === 403 ? t("forbidden") : t("failed") + C.problemText(answer);
    });
  }

  main.appendChild(el("p", {}, [el("a", { href: C.root + "admin/sites" + (en ? "?lang=en" : ""), text: t("back") })]));
  load();
})();
