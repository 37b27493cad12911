// perf-alerts dashboard: plain DOM over the JSON API (/api/v1). No framework, no build step.
// Every value from the API is inserted with textContent, never as HTML.
"use strict";

(function () {
  const API = "/api/v1";
  const REFRESH_MS = 10000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "perf-alerts-token";
  const tokenMeta = document.querySelector('meta[name="pa-token-required"]');
  const tokenRequired = !!tokenMeta && tokenMeta.content === "true";
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let timer = null;
  let loading = false;
  let again = false;
  let serverNow = null;

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = String(v);
      else node.setAttribute(k, String(v));
    }
    for (const c of children) if (c) node.appendChild(c);
    return node;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    const n = Number(v);
    const a = Math.abs(n);
    if (a !== 0 && (a >= 1e6 || a < 1e-4)) return n.toExponential(2);
    if (Number.isInteger(n)) return String(n);
    return String(Number(n.toPrecision(4)));
  }

  function plural(n, word, many) {
    return n + " " + (n === 1 ? word : (many || word + "s"));
  }

  // a y-axis tick in the metric's unit, short enough for the axis: 0.000779 s reads "0.78 ms"
  function axisText(v, unit) {
    if (v === 0) return "0" + (unit && unit !== "%" ? " " + unit : unit === "%" ? "%" : "");
    const a = Math.abs(v);
    const num = (x) => String(Number(x.toPrecision(3)));
    if (unit === "s") {
      if (a < 1e-3) return num(v * 1e6) + " µs";
      if (a < 1) return num(v * 1e3) + " ms";
      if (a >= 3600) return num(v / 3600) + " h";
      if (a >= 120) return num(v / 60) + " min";
      return num(v) + " s";
    }
    if (unit === "USD") return "$" + (a < 0.01 ? v.toPrecision(2) : num(v));
    if (unit === "%") return num(v) + "%";
    const base = a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(1) : a >= 1e4 ? num(v / 1e3) + "k" : num(v);
    return base + (unit ? " " + unit : "");
  }

  function parseTime(s) {
    if (s === null || s === undefined || s === "") return null;
    if (typeof s === "number") return Number.isFinite(s) ? s * 1000 : null;  // Unix seconds
    const t = Date.parse(s);
    return Number.isNaN(t) ? null : t;
  }

  function ago(iso) {
    const t = parseTime(iso);
    if (t === null) return "—";
    const now = parseTime(serverNow) || Date.now();
    let s = Math.max(0, Math.round((now - t) / 1000));
    if (s < 60) return s + "s ago";
    const units = [["d", 86400], ["h", 3600], ["m", 60]];
    const parts = [];
    for (const [u, size] of units) {
      if (s >= size) { parts.push(Math.floor(s / size) + u); s %= size; }
      if (parts.length === 2) break;
    }
    return parts.join(" ") + " ago";
  }

  function hhmm(ms) {
    const d = new Date(ms);
    return String(d.getUTCHours()).padStart(2, "0") + ":" + String(d.getUTCMinutes()).padStart(2, "0");
  }

  function shortTime(iso) {
    const t = parseTime(iso);
    if (t === null) return "—";
    const d = new Date(t);
    return el("time", { datetime: d.toISOString(), title: d.toISOString(), text: d.toISOString().slice(5, 16).replace("T", " ") + " UTC" });
  }

  function labelText(labels, skip) {
    return Object.entries(labels || {})
      .filter(([k]) => !(skip || []).includes(k))
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => k + "=" + v);
  }

  function chips(labels, skip) {
    return el("span", { class: "chips" }, labelText(labels, skip).map((t) => el("span", { class: "chip", text: t })));
  }

  function badge(kind, text) {
    return el("span", { class: "badge badge-" + String(kind).replace(/[^a-z_-]/gi, ""), text: text || kind });
  }

  let statusTimer = null;
  function setStatus(msg, kind) {
    const box = document.getElementById("status");
    box.textContent = msg || "";
    box.className = "status" + (msg ? " show " + (kind || "info") : "");
    clearTimeout(statusTimer);
    if (msg && kind === "ok") statusTimer = setTimeout(() => setStatus(""), 8000);
  }

  function replace(id, ...nodes) {
    const box = document.getElementById(id);
    box.replaceChildren(...nodes);
  }

  function table(columns, rows, emptyText) {
    if (!rows.length) return el("p", { class: "empty", text: emptyText });
    return el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", text: c })))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((cell, i) => el("td", { "data-label": columns[i] }, cell === null || cell === undefined ? "—" : cell))))));
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, options) {
    const opts = Object.assign({ method: "GET" }, options || {});
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.body);
    }
    opts.headers = headers;
    let res;
    try {
      res = await fetch(API + path, opts);
    } catch (e) {
      throw new ApiError(0, "the server is unreachable");
    }
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (res.status === 401) {
      askToken(token ? "The token was not accepted." : "");
      throw new ApiError(401, "a token is required");
    }
    if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.statusText || "request failed");
    return data;
  }

  // ------------------------------------------------------------------ token
  function askToken(note) {
    const form = document.getElementById("token-form");
    form.hidden = false;
    document.getElementById("main").hidden = true;
    if (note) setStatus(note, "error");
    document.getElementById("token-input").focus();
  }

  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = document.getElementById("token-input").value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    document.getElementById("token-form").hidden = true;
    document.getElementById("main").hidden = false;
    setStatus("");
    refresh();
  });

  // ------------------------------------------------------------------ alerts
  async function act(button, work, okText) {
    button.disabled = true;
    try {
      await work();
      setStatus(okText, "ok");
    } catch (e) {
      setStatus(e.message, "error");
      button.disabled = false;
    }
    await refresh();
  }

  function renderAlerts(data) {
    serverNow = data.now;
    const alerts = data.alerts || [];
    const count = document.getElementById("alerts-count");
    const firing = alerts.filter((a) => a.state === "firing").length;
    count.textContent = firing + " firing · " + (alerts.length - firing) + " pending";
    count.className = "pill" + (firing ? " pill-bad" : " pill-good");
    const body = document.getElementById("alerts-body");
    if (!alerts.length) {
      body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "empty", text: "No active alerts. All quiet." })));
      return;
    }
    body.replaceChildren(...alerts.map((a) => {
      const flags = [];
      if (a.acknowledged) flags.push(el("span", { class: "flag flag-ack ack-state", text: "acknowledged" + (a.acknowledged_by ? " by " + a.acknowledged_by : "") }));
      if (a.silenced) flags.push(el("span", { class: "flag flag-sil", text: "silenced" }));
      if (a.escalation_level) flags.push(el("span", { class: "flag flag-esc", text: "escalated L" + a.escalation_level }));
      if (!a.acknowledged) flags.unshift(el("span", { class: "flag flag-open ack-state", text: "unacknowledged" }));
      const ackBtn = el("button", {
        type: "button", class: "btn btn-ack", text: a.acknowledged ? "Acked" : "Ack",
        "aria-label": "Acknowledge " + a.rule, disabled: a.acknowledged,
        onclick: (ev) => act(ev.currentTarget, () => api("/alerts/" + encodeURIComponent(a.fingerprint) + "/ack", { method: "POST", body: { by: "dashboard" } }),
          "Acknowledged " + a.rule + "."),
      });
      const silBtn = el("button", {
        type: "button", class: "btn btn-quiet btn-silence", text: "Silence 1h",
        "aria-label": "Silence " + a.rule + " for one hour", disabled: a.silenced,
        onclick: (ev) => act(ev.currentTarget, () => api("/silences", { method: "POST", body: { fingerprint: a.fingerprint, duration: "1h", comment: "silenced from the dashboard" } }),
          "Silenced " + a.rule + " for 1 hour."),
      });
      const since = a.state === "firing" ? a.started_at : a.active_since;
      const thr = a.threshold === null || a.threshold === undefined ? "" : " (" + (a.op || "vs") + " " + fmt(a.threshold) + ")";
      return el("tr", { "data-fingerprint": a.fingerprint, class: "sev-row sev-row-" + a.severity + (a.acknowledged ? " is-acked" : "") },
        el("td", { "data-label": "Severity" }, badge(a.severity)),
        el("td", { "data-label": "State" }, badge(a.state)),
        el("td", { "data-label": "Alert", class: "alert-cell" },
          el("div", { class: "rule", text: a.rule }),
          a.summary ? el("div", { class: "summary", text: a.summary }) : null,
          chips(a.labels, ["alertname", "severity"]),
          el("div", { class: "fp muted small", text: a.fingerprint })),
        el("td", { class: "num", "data-label": "Value" }, el("strong", { text: fmt(a.value) }), el("span", { class: "muted small", text: thr })),
        el("td", { title: since || "", "data-label": "Since" }, ago(since)),
        el("td", { "data-label": "Status" }, flags),
        el("td", { class: "actions" }, ackBtn, silBtn));
    }));
  }

  // ------------------------------------------------------------------ charts
  const PALETTE = 6;

  const MEANING = { trend: "the % change of the trend", anomaly: "the anomaly score (0–1)", absent: "the seconds without data" };

  function windowText(data) {
    const w = Math.round(data.window || 0);
    const txt = w >= 3600 && w % 3600 === 0 ? w / 3600 + "h" : w >= 60 ? Math.round(w / 60) + "m" : w + "s";
    return data.aggregate + " over " + txt;
  }

  function chart(data, alert) {
    // drawn at the width it is shown at (a phone: about 340 px), so its text is never scaled down to a blur
    const shown = (document.getElementById("charts") || {}).clientWidth || 640;
    const W = Math.round(Math.max(300, Math.min(640, shown - 26))), H = 190, R = 14, T = 14, B = 28;
    let L = 56;
    const unit = data.unit || "";
    const series = (data.series || []).filter((s) => s.points.length);
    const hasAgg = series.some((s) => (s.aggregated || []).length);
    const title = alert.rule + " — " + (data.metric || "?") + " " + labelText(alert.labels, ["alertname", "severity"]).join(", ");
    const box = el("figure", { class: "chart" },
      el("figcaption", {},
        el("span", { class: "rule", text: alert.rule }), " ", badge(alert.severity),
        el("span", { class: "muted small", text: " " + (data.metric || "") + (unit ? " (" + unit + ")" : "") + (hasAgg ? " · " + windowText(data) : "") })));
    if (!series.length) {
      box.appendChild(el("p", { class: "empty", text: "No samples in the last 6 hours." }));
      return box;
    }
    const x0 = data.start * 1000, x1 = data.end * 1000;
    const all = series.flatMap((s) => s.points.concat(s.aggregated || []).map((p) => p[1]));
    let lo = Math.min(...all), hi = Math.max(...all);
    const thr = typeof data.threshold === "number" ? data.threshold : null;
    if (thr !== null) { lo = Math.min(lo, thr); hi = Math.max(hi, thr); }
    if (lo === hi) { lo -= 1; hi += 1; }
    const allPositive = lo >= 0;
    const pad = (hi - lo) * 0.08;
    lo -= pad; hi += pad;
    if (allPositive && lo < 0) lo = 0;
    const ticks = [0, 1, 2, 3].map((i) => lo + ((hi - lo) * i) / 3);
    const tickText = ticks.map((v) => axisText(v, unit));
    L = Math.max(40, 10 + 6.6 * Math.max(...tickText.map((t) => t.length)));  // room for the longest label
    const sx = (t) => L + ((t - x0) / Math.max(1, x1 - x0)) * (W - L - R);
    const sy = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    const line = (pts, cls) => svg("polyline", { points: pts.map((p) => sx(p[0] * 1000).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" "), class: cls });
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "Chart of " + title, class: "chart-svg", preserveAspectRatio: "xMidYMid meet" },
      svg("title", { text: title }));
    ticks.forEach((v, i) => {
      const y = sy(v);
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid-line" }));
      root.appendChild(svg("text", { x: L - 6, y: y + 4, class: "axis axis-y", "text-anchor": "end", text: tickText[i] }));
    });
    root.appendChild(svg("text", { x: L, y: H - 8, class: "axis", "text-anchor": "start", text: hhmm(x0) + " UTC" }));
    root.appendChild(svg("text", { x: W - R, y: H - 8, class: "axis", "text-anchor": "end", text: hhmm(x1) + " UTC" }));
    series.slice(0, PALETTE).forEach((s, i) => {
      const agg = s.aggregated || [];
      root.appendChild(line(s.points, agg.length ? "line raw line-" + i : "line line-" + i));
      if (agg.length) root.appendChild(line(agg, "line line-" + i));
      const only = agg.length === 1 ? agg[0] : s.points.length === 1 ? s.points[0] : null;
      if (only) root.appendChild(svg("circle", { cx: sx(only[0] * 1000), cy: sy(only[1]), r: 3, class: "dot line-" + i }));
    });
    if (thr !== null) {
      const y = sy(thr);
      root.appendChild(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "threshold" }));
      root.appendChild(svg("text", { x: W - R - 4, y: y - 5, class: "threshold-label", "text-anchor": "end", text: "threshold " + (data.op || "") + " " + axisText(thr, unit) }));
    }
    box.appendChild(root);
    const legend = [];
    if (series.length > 1) {
      series.slice(0, PALETTE).forEach((s, i) => legend.push(
        el("span", { class: "legend-item" }, el("span", { class: "swatch line-" + i }), labelText(s.labels).join(", ") || "(no labels)")));
    }
    if (hasAgg) {
      legend.push(el("span", { class: "legend-item" }, el("span", { class: "swatch swatch-solid" }), windowText(data) + " (what the rule compares)"));
      legend.push(el("span", { class: "legend-item" }, el("span", { class: "swatch swatch-raw" }), "raw samples"));
    }
    if (thr === null && data.rule_type && MEANING[data.rule_type]) {
      legend.push(el("span", { class: "legend-item", text: data.rule_type + " rule: the threshold applies to " + MEANING[data.rule_type] +
        " — now " + fmt(data.value) + " " + (data.op || "") + " " + fmt(data.rule_threshold) }));
    }
    if (legend.length) box.appendChild(el("div", { class: "legend" }, legend));
    return box;
  }

  async function renderCharts(alerts) {
    const firing = alerts.filter((a) => a.state === "firing").slice(0, 6);
    if (!firing.length) {
      replace("charts", el("p", { class: "empty", text: "No firing alerts, nothing to chart." }));
      return;
    }
    const results = await Promise.allSettled(firing.map((a) => api("/alerts/" + encodeURIComponent(a.fingerprint) + "/series?lookback=6h")));
    replace("charts", ...results.map((r, i) => r.status === "fulfilled"
      ? chart(r.value, firing[i])
      : el("p", { class: "empty", text: firing[i].rule + ": " + r.reason.message })));
  }

  // ------------------------------------------------------------------ health
  function scoreClass(score) {
    if (score === null || score === undefined) return "none";
    return score >= 80 ? "good" : score >= 50 ? "warn" : "bad";
  }

  function healthCard(name, h) {
    return el("article", { class: "agent agent-" + scoreClass(h.score) },
      el("header", {},
        el("h3", { text: name }),
        el("span", { class: "score score-" + scoreClass(h.score), text: h.score === null ? "no data" : fmt(Math.round(h.score)) })),
      el("div", { class: "muted small", text: h.status }),
      el("ul", { class: "components" }, (h.components || []).map((c) =>
        el("li", {},
          el("span", { class: "cname", text: c.name }),
          el("meter", { min: 0, max: 100, low: 50, high: 80, optimum: 100, value: c.score === null ? 0 : c.score, "aria-label": c.name + " score" }),
          el("span", { class: "cscore", text: c.score === null ? "—" : fmt(Math.round(c.score)) }),
          el("div", { class: "evidence small muted", text: c.evidence })))));
  }

  function renderHealth(h) {
    const ov = h.overall || {};
    replace("overall",
      el("span", { class: "muted small", text: "overall health" }),
      el("span", { class: "score big score-" + scoreClass(ov.score), text: ov.score === null || ov.score === undefined ? "no data" : fmt(Math.round(ov.score)) }),
      el("span", { class: "muted small", text: ov.status || "" }));
    // the scores are the last `recent` judged against the lookback, not the whole lookback
    document.getElementById("health-window").textContent = !h.window ? "" : h.recent
      ? "the last " + h.recent + " vs the " + h.window.lookback + " before" : "over the last " + h.window.lookback;
    const agents = Object.entries(h.agents || {});
    const cards = agents.map(([name, d]) => healthCard(name, d));
    if (!agents.length) cards.push(healthCard("overall", ov));
    replace("health", ...cards);
  }

  // ------------------------------------------------------------------ SLOs
  // the numbers of `perf-alerts slo` (the same slo_report): budget left and burn rate formatted as it prints them
  const SLO_BADGE = { ok: "good", "at risk": "warn", breached: "bad", "no data": "none" };

  function budgetBar(r) {
    const left = r.budget_remaining;
    if (left === null || left === undefined) return el("span", { class: "muted", text: "no data" });
    const text = (left * 100).toFixed(1) + "%";
    const level = left < 0 ? "bad" : left < 0.25 ? "warn" : "good";
    const fill = el("span", { class: "budget-fill budget-" + level });
    fill.style.width = (left < 0 ? 100 : Math.min(100, left * 100)).toFixed(1) + "%";  // CSSOM: allowed by the CSP
    return el("span", { class: "budget", title: left < 0 ? "error budget overspent" : text + " of the error budget left" },
      el("span", { class: "budget-track", role: "img", "aria-label": "error budget left " + text }, fill),
      el("span", { class: "budget-text budget-text-" + level, text: text + (left < 0 ? " overspent" : "") }));
  }

  function renderSLOs(d) {
    const rows = d.slos || [];
    const c = d.counts || {};
    const count = document.getElementById("slos-count");
    const parts = [["breached", c.breached], ["at risk", c["at risk"]], ["ok", c.ok], ["no data", c["no data"]]].filter((p) => p[1]);
    count.textContent = parts.map((p) => p[1] + " " + p[0]).join(" · ");
    count.className = "pill" + (c.breached ? " pill-bad" : rows.length && !c["at risk"] ? " pill-good" : "");
    const body = rows.map((r) => [
      el("strong", { class: "slo-name", text: r.name }),
      Object.keys(r.labels || {}).length ? chips(r.labels) : el("span", { class: "muted", text: "—" }),
      el("div", { class: "cell" }, r.objective_display, el("div", { class: "muted small", text: r.objective_text })),
      el("div", { class: "cell slo-achieved" }, el("strong", { text: r.achieved_text }),
        el("span", { class: "muted small", text: " over " + r.window + (r.projected_text ? " · projected " + r.projected_text : "") })),
      budgetBar(r),
      r.burn_rate === null || r.burn_rate === undefined ? el("span", { class: "muted nowrap", text: r.status === "no data" ? "no data" : "—" })
        : el("span", { class: "nowrap" + (r.burn_rate > 1 ? " burn-high" : "") }, r.burn_rate.toFixed(2) + "×"),
      r.exhausted_at ? shortTime(r.exhausted_at) : el("span", { class: "muted nowrap", text: r.status === "no data" ? "no data" : "—" }),
      el("div", { class: "cell" }, badge(SLO_BADGE[r.status] || "none", r.status), el("div", { class: "muted small slo-why", text: r.why }))]);
    replace("slos", table(["SLO", "Labels", "Objective", "Achieved", "Budget left", "Burn (1h)", "Exhausted at", "Status"], body,
      "No SLOs configured (add slos: to the config)."));
  }

  // ------------------------------------------------------------------ schedules, policies, silences, notifications
  function renderSchedules(d) {
    const rows = (d.schedules || []).map((s) => [
      el("strong", { text: s.name }), (s.job || "—") + (s.group && s.job === "evaluate" ? " (" + s.group + ")" : ""),
      s.every === undefined || s.every === null ? "—" : String(s.every) + (s.interval && s.interval !== s.every ? " (every " + s.interval + ")" : ""),
      s.last_run ? el("span", {}, shortTime(s.last_run), s.last_status ? el("span", { class: "muted small", text: " " + s.last_status }) : null) : "never",
      s.next_run ? shortTime(s.next_run) : "—",
      s.enabled === false ? badge("none", "disabled") : s.overdue
        // the badge is upper-cased by CSS: the duration goes beside it ("2M24S" read as months)
        ? el("span", {}, badge("bad", "overdue"), s.overdue_by ? el("span", { class: "small", text: " by " + s.overdue_by }) : null) : badge("good", "on time")]);
    replace("schedules", table(["Name", "Job", "Every", "Last run", "Next run", "State"], rows, "No schedules configured."));
  }

  function renderPolicies(d) {
    const rows = (d.policies || []).map((p) => [
      el("strong", { text: p.name }), el("code", { text: p.when || "—" }),
      Array.isArray(p.actions) ? p.actions.map((a) => a.mode ? `${a.type} (${a.mode})` : a.type).join(", ") : "—",
      p.last_fired ? shortTime(p.last_fired) : "never", p.cooldown === undefined || p.cooldown === null ? "—" : String(p.cooldown),
      p.enabled === false ? badge("none", "disabled")
        : p.in_cooldown ? el("span", {}, badge("warn", "cooling down"), p.cooldown_until ? el("span", { class: "muted small" }, " until ", shortTime(p.cooldown_until)) : null)
        : badge("good", "armed")]);
    replace("policies", table(["Name", "Condition", "Actions", "Last fired", "Cooldown", "State"], rows, "No policies configured."));
  }

  function renderSilences(d) {
    const rows = (d.silences || []).map((s) => [
      badge(s.state === "active" ? "good" : s.state === "pending" ? "warn" : "none", s.state),
      el("span", { class: "chips" }, (s.matchers || []).map((m) => el("span", { class: "chip", text: m }))),
      shortTime(s.ends_at), s.created_by, s.comment || "",
      s.state === "expired" ? "" : el("button", {
        type: "button", class: "btn btn-quiet", text: "Expire", "aria-label": "Expire silence " + s.id,
        onclick: (ev) => act(ev.currentTarget, () => api("/silences/" + encodeURIComponent(s.id), { method: "DELETE" }), "Silence " + s.id + " expired."),
      })]);
    replace("silences", table(["State", "Matchers", "Ends", "By", "Comment", ""], rows, "No active silences."));
  }

  // what a notification announced: "HighLatency firing", "HighLatency, LLMErrors: 1 firing, 1 resolved"
  function notificationText(n) {
    const rules = n.rules || [];
    const counts = [n.firing ? n.firing + " firing" : "", n.resolved ? n.resolved + " resolved" : ""].filter(Boolean).join(", ");
    if (!rules.length) return counts || n.kind;
    const names = rules.slice(0, 3).join(", ") + (rules.length > 3 ? " +" + (rules.length - 3) + " more" : "");
    const total = (n.firing || 0) + (n.resolved || 0);
    if (total === 1) return names + " " + (n.firing ? "firing" : "resolved");
    return names + (counts ? ": " + counts : "");
  }

  function renderNotifications(d) {
    const rcv = document.getElementById("receivers");
    rcv.replaceChildren(...(d.receivers || []).map((r) =>
      el("span", { class: "chip" + (r.disabled ? " chip-bad" : ""), title: r.reason || "",
        text: (r.name === r.kind ? r.name : r.name + " → " + r.kind) + (r.disabled ? " DISABLED" : "") })));
    if ((d.receivers || []).length) rcv.prepend(el("span", { class: "muted", text: "receivers: " }));
    const rows = (d.notifications || []).slice(0, 25).map((n) => [
      "#" + n.id, n.receiver, n.kind, badge(n.state), String(n.attempts),
      n.title || notificationText(n),
      shortTime(n.delivered_at || n.created_at),
      n.last_error ? el("span", { class: "err small", text: n.last_error }) : ""]);
    replace("notifications", table(["ID", "Receiver", "Kind", "Delivery", "Attempts", "Content", "Time", "Last error"], rows, "No notifications yet."));
  }

  // the daemons sharing the store: "leader: <replica> · N replicas", heartbeat ages on hover
  function renderCluster(cl) {
    const box = document.getElementById("cluster");
    const reps = (cl && cl.replicas) || [];
    if (!reps.length) { box.textContent = ""; box.title = ""; return; }
    const stale = reps.length - (cl.alive || 0);
    box.textContent = (cl.leader ? "leader: " + cl.leader : "no leader") + " · " + plural(reps.length, "replica")
      + (stale > 0 ? " (" + stale + " stale)" : "");
    box.title = reps.map((r) => r.id + (r.leader ? " (leader)" : "") + ": heartbeat " + r.heartbeat_ago + " ago, " + r.state).join("\n");
  }

  // ------------------------------------------------------------------ refresh loop
  async function section(id, work) {
    try {
      await work();
    } catch (e) {
      if (e.status === 401) throw e;
      const box = document.getElementById(id);
      if (box) box.replaceChildren(el("p", { class: "empty err", text: "Could not load: " + e.message }));
    }
  }

  async function refresh() {
    if (loading) { again = true; return; }
    if (tokenRequired && !token) { askToken(""); return; }
    loading = true;
    try {
      let alerts = [];
      await section("alerts-body", async () => {
        const d = await api("/alerts?state=active");
        alerts = d.alerts || [];
        renderAlerts(d);
      });
      await Promise.all([
        section("charts", () => renderCharts(alerts)),
        section("health", async () => renderHealth(await api("/health"))),
        section("slos", async () => renderSLOs(await api("/slos"))),
        section("schedules", async () => renderSchedules(await api("/schedules"))),
        section("policies", async () => renderPolicies(await api("/policies"))),
        section("silences", async () => renderSilences(await api("/silences"))),
        section("notifications", async () => renderNotifications(await api("/notifications?limit=25"))),
        section("last-eval", async () => {
          const st = await api("/status");
          const le = st.last_evaluation;
          document.getElementById("last-eval").textContent = le
            ? "last evaluation " + ago(le.at) + " · " + plural(st.rules, "rule") + (le.errors && le.errors.length ? " · " + plural(le.errors.length, "rule error") : "")
            : plural(st.rules, "rule") + " · not evaluated yet";
          renderCluster(st.cluster);
        }),
      ]);
      document.getElementById("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";  // every time on the page is UTC
      document.body.dataset.loaded = "true";
    } catch (e) {
      if (e.status !== 401) setStatus(e.message, "error");
    } finally {
      loading = false;
    }
    if (again) { again = false; await refresh(); }
  }

  document.getElementById("refresh").addEventListener("click", () => refresh());
  refresh();
  timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  window.addEventListener("beforeunload", () => clearInterval(timer));
})();
