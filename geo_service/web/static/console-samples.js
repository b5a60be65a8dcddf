/* The office console's Sample-to-real screen (示例转正): per town and layer,
 * the sample sites the person keeps, whether the town has real sites of
 * that layer and which real site is probably the same place; one action
 * retires a town's samples of a layer (after a confirm); retired samples
 * are listed with a restore button each.
 *
 * Reads /admin/api/samples; changes post there with the session's CSRF
 * token, and the service checks the person's towns again. Every value from
 * the store is shown as text (textContent): nothing is parsed as HTML.
 */
(function () {
  "use strict";

  var C = window.ConsoleScreen;
  var DATA = C.data;
  var LANG = C.lang;
  var el = C.el;
  var clear = C.clear;
  var request = C.request;
  var problemText = C.problemText;
  var API = "admin/api/samples";

  var TEXT = {
    zh: {
      title: "示例转正", intro: "示例站点（sample）只是占位。录入真实站点后，按镇街和图层把示例站点下线；下线的示例可以恢复。",
      loading: "正在加载……", none: "您负责的镇街没有示例站点。",
      count: "{n} 个示例站点", real: "本镇街已有 {n} 个真实站点", noReal: "本镇街还没有这个图层的真实站点",
      same: "可能对应真实站点：{sites}", noSame: "未找到同名的真实站点",
      retire: "下线本镇街的这些示例站点", confirmRetire: "确定把{town}的 {n} 个“{layer}”示例站点下线吗？下线后公众地图不再显示，可在下方恢复。",
      retired: "已下线 {n} 个示例站点", retiredTitle: "已下线的示例站点", noRetired: "暂无",
      restore: "恢复", restored: "已恢复 {name}", by: "{at} · {actor}", failed: "操作失败：",
      town: "镇街", layer: "图层", name: "名称", when: "下线时间与操作人"
    },
    en: {
      title: "Sample to real", intro: "Sample sites are placeholders. Once the real sites are entered, retire a town's samples of a layer; a retired sample can be restored.",
      loading: "Loading…", none: "Your towns hold no sample sites.",
      count: "{n} sample sites", real: "The town has {n} real sites of this layer", noReal: "The town has no real site of this layer yet",
      same: "Probably the same place as the real site: {sites}", noSame: "No real site of the same name",
      retire: "Retire this town's samples", confirmRetire: "Retire the {n} “{layer}” sample sites of {town}? The public map stops showing them; they can be restored below.",
      retired: "{n} sample sites retired", retiredTitle: "Retired sample sites", noRetired: "None",
      restore: "Restore", restored: "{name} restored", by: "{at} · {actor}", failed: "Failed: ",
      town: "Town", layer: "Layer", name: "Name", when: "Retired at, by"
    }
  };
  var T = TEXT[LANG];
  var t = C.words(TEXT);
  function layerName(item) { return (LANG === "en" ? item.layer_en : item.layer_zh) || item.layer; }




  var main = document.getElementById("console-main");
  var status = el("p", { id: "samples-status", class: "sheet-status", role: "status", "aria-live": "polite", text: T.loading });
  var groupsBox = el("div", { id: "sample-groups", class: "sample-groups" });
  var retiredBox = el("section", { id: "retired-samples", class: "sheet-report" });
  main.appendChild(el("h1", { text: T.title }));
  main.appendChild(el("p", { class: "intro", text: T.intro }));
  main.appendChild(status);
  main.appendChild(groupsBox);
  main.appendChild(retiredBox);

  function say(text, warning) {
    status.textContent = text;
    status.className = "sheet-status" + (warning ? " warning" : "");
  }

  function load(message) {
    return request("GET", API).then(function (answer) {
      if (!answer.ok) { say(T.failed + problemText(answer), true); return; }
      say(message || "");
      showGroups(answer.body.groups);
      showRetired(answer.body.retired);
    }).catch(function (error) { say(T.failed + error, true); });
  }

  function showGroups(groups) {
    clear(groupsBox);
    if (!groups.length) { groupsBox.appendChild(el("p", { id: "no-samples", text: T.none })); return; }
    groups.forEach(function (group) {
      var list = el("ul", { class: "sample-list" });
      group.samples.forEach(function (sample) {
        var same = sample.same_place.length
          ? t("same", { sites: sample.same_place.map(function (s) { return s.name + "（" + s.id + "）"; }).join("、") })
          : T.noSame;
        list.appendChild(el("li", { "data-site": sample.id }, [
          el("strong", { text: sample.name }), el("span", { class: "id", text: " " + sample.id }),
          el("div", { class: sample.same_place.length ? "same found" : "same", text: same })
        ]));
      });
      var button = el("button", { type: "button", class: "primary retire", text: T.retire });
      button.addEventListener("click", function () { retire(group, button); });
      groupsBox.appendChild(el("section", {
        class: "sample-group", "data-town": group.town_code, "data-layer": group.layer
      }, [
        el("h2", { text: group.town_name + " · " + layerName(group) }),
        el("p", { class: "counts" }, [
          el("span", { class: "count", text: t("count", { n: group.samples.length }) }),
          el("span", { text: " · " }),
          el("span", { class: group.real_sites ? "real" : "real none", text: group.real_sites ? t("real", { n: group.real_sites }) : T.noReal })
        ]),
        list,
        button
      ]));
    });
  }

  function retire(group, button) {
    var question = t("confirmRetire", { town: group.town_name, n: group.samples.length, layer: layerName(group) });
    if (!window.confirm(question)) return;
    button.disabled = true;
    request("POST", API + "/retire", { layer: group.layer, town: group.town_code }).then(function (answer) {
      if (!answer.ok) { button.disabled = false; say(T.failed + problemText(answer), true); return; }
      load(t("retired", { n: answer.body.retired.length }));
    }).catch(function (error) { button.disabled = false; say(T.failed + error, true); });
  }

  function showRetired(retired) {
    clear(retiredBox);
    retiredBox.appendChild(el("h2", { text: T.retiredTitle }));
    if (!retired.length) { retiredBox.appendChild(el("p", { text: T.noRetired })); return; }
    var body = el("tbody");
    retired.forEach(function (site) {
      var button = el("button", { type: "button", class: "restore", "data-site": site.id, text: T.restore });
      button.addEventListener("click", function () {
        button.disabled = true;
        request("POST", API + "/restore", { layer: site.layer, id: site.id }).then(function (answer) {
          if (!answer.ok) { button.disabled = false; say(T.failed + problemText(answer), true); return; }
          load(t("restored", { name: site.name }));
        }).catch(function (error) { button.disabled = false; say(T.failed + error, true); });
      });
      body.appendChild(el("tr", { "data-site": site.id }, [
        el("td", { text: site.town_name }),
        el("td", { text: layerName(site) }),
        el("td", { text: site.name }),
        el("td", { text: t("by", { at: site.at.slice(0, 16).replace("T", " "), actor: site.actor }) }),
        el("td", {}, [button])
      ]));
    });
    var head = el("tr", {}, [T.town, T.layer, T.name, T.when, ""].map(function (h) { return el("th", { scope: "col", text: h }); }));
    retiredBox.appendChild(el("div", { class: "table-box" }, [
      el("table", { id: "retired-table", class: "report-table" }, [el("thead", {}, [head]), body])
    ]));
  }

  load();
})();
