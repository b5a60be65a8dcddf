/* What the console's screens share: the
 * page's data block, text-only DOM building, and requests to the service
 * with the session cookie and, on every change, the page's CSRF token.
 *
 * Nothing here parses HTML: every value from the store or a person becomes
 * text (textContent, attribute values set one by one).
 */
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("console-data").textContent);
  var LANG = DATA.lang === "en" ? "en" : "zh";
  var ROOT = new URL("../", document.baseURI).pathname; // the service, from /admin/...

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === undefined || value === null || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // ``path`` is relative to the service (e.g. "admin/api/supervision").
  function request(method, path, body, headers) {
    var init = { method: method, credentials: "same-origin", headers: Object.assign({ Accept: "application/json" }, headers || {}) };
    if (method !== "GET") init.headers["X-CSRF-Token"] = DATA.csrf;
    if (body instanceof Blob) {
      init.body = body; // a file, sent as it is (its Content-Type in ``headers``)
    } else if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    return fetch(ROOT + path, init).then(function (response) {
      return response.text().then(function (text) {
        var parsed = null;
        try { parsed = text ? JSON.parse(text) : null; } catch (e) { parsed = null; }
        return { status: response.status, ok: response.ok, body: parsed, etag: response.headers.get("ETag") };
      });
    }, function () {
      return { status: 0, ok: false, body: { detail: LANG === "en" ? "the service cannot be reached" : "无法连接服务" } };
    });
  }
  function problemText(answer) {
    var body = answer.body || {};
    return body.detail_zh || body.detail || body.title || ("HTTP " + answer.status);
  }

  // The page's words in its language; ``{name}`` places a value (as text).
  function words(text) {
    var chosen = text[LANG];
    return function (key, values) {
      var result = chosen[key];
      Object.keys(values || {}).forEach(function (name) { result = result.split("{" + name + "}").join(String(values[name])); });
      return result;
    };
  }

  // A UTC instant of the audit trail as the office's clock reads it (Beijing time).
  function localTime(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) return String(iso || "");
    var parts = {};
    new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" })
      .formatToParts(date).forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" + parts.minute + ":" + parts.second;
  }

  function percent(share) {
    if (share === null || share === undefined || isNaN(share)) return "—";
    return (Math.round(share * 1000) / 10).toFixed(1) + "%";
  }

  function townNames() {
    var names = {};
    DATA.towns.forEach(function (town) { names[town.code] = town.name; });
    return names;
  }

  /* Run a process as a job (Prefer: respond-async) and follow it until it
   * ends: ``onProgress(percent, status)`` while it runs; resolves with the
   * job's status, rejects with the words of what went wrong. */
  function runJob(processId, inputs, onProgress) {
    return request("POST", "admin/api/processes/" + encodeURIComponent(processId) + "/execution", { inputs: inputs }, { Prefer: "respond-async" })
      .then(function (answer) {
        if (!answer.ok || !answer.body || !answer.body.jobID) throw new Error(problemText(answer));
        return follow(answer.body);
      });
    function follow(job) {
      onProgress(job.progress || 0, job.status);
      if (job.status === "successful") return job;
      if (job.status === "failed" || job.status === "dismissed") throw new Error(job.message || job.status);
      return new Promise(function (resolve) { setTimeout(resolve, 600); }).then(function () {
        return request("GET", "admin/api/jobs/" + encodeURIComponent(job.jobID)).then(function (answer) {
          if (!answer.ok) throw new Error(problemText(answer));
          return follow(answer.body);
        });
      });
    }
  }

  window.ConsoleScreen = {
    data: DATA, lang: LANG, root: ROOT, el: el, clear: clear, request: request,
    problemText: problemText, words: words, localTime: localTime, percent: percent,
    townNames: townNames, runJob: runJob
  };
})();
