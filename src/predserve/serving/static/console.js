// predserve console: one page over the admin JSON API (docs/console.md).
// Data never becomes markup: every value is set as text (textContent, text nodes, SVG attributes).
"use strict";

(() => {
  const KEY_STORAGE = "predserve.adminKey";
  const POLL_MS = { models: 5000, model: 5000, traffic: 1000 };
  const state = { key: sessionStorage.getItem(KEY_STORAGE), session: null, timer: null, generation: 0, view: {} };
  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers ------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttributes(node, attrs);
    append(node, children);
    return node;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttributes(node, attrs);
    append(node, children);
    return node;
  }

  function setAttributes(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  // ---- formatting -------------------------------------------------------------------------------
  const integer = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const fixed = (n, digits) => (n === null || n === undefined ? "–" : Number(n).toFixed(digits));
  const percent = (share, digits = 1) => (share === null || share === undefined ? "–" : (share * 100).toFixed(digits) + "%");
  const when = (unix) => (unix ? new Date(unix * 1000).toLocaleString() : "–");
  const clock = (unix) => new Date(unix * 1000).toLocaleTimeString();

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }

  // A tick label: as many decimals as small values need, none for large ones.
  function tick(value) {
    if (value === 0) return "0";
    if (Math.abs(value) >= 1e6) return Number((value / 1e6).toPrecision(3)) + "M";
    if (Math.abs(value) >= 1e4) return Number((value / 1e3).toPrecision(3)) + "k";
    if (Math.abs(value) >= 100) return integer(Math.round(value));
    if (Math.abs(value) >= 10) return Number(value.toFixed(1)).toString();
    return Number(value.toPrecision(2)).toString();
  }

  // Table headers; a name ending in "#" is a numeric column (right-aligned like its cells).
  function headers(names) {
    return el("thead", {}, el("tr", {}, names.map((n) => (n.endsWith("#") ? el("th", { class: "num" }, n.slice(0, -1)) : el("th", {}, n)))));
  }

  function niceCeiling(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  // ---- the JSON API -----------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path) {
    const headers = state.key ? { Authorization: "Bearer " + state.key } : {};
    let response;
    try {
      response = await fetch(path, { headers, cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, "the server did not answer (" + error.message + ")");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      const message = body && body.error && body.error.message ? body.error.message : response.statusText;
      throw new ApiError(response.status, message);
    }
    return body;
  }

  // ---- sign-in ----------------------------------------------------------------------------------
  async function start() {
    $("login").addEventListener("submit", signIn);
    $("logout").addEventListener("click", signOut);
    window.addEventListener("hashchange", route);
    // Polling pauses while the tab is hidden; it resumes (re-rendering the view) when the tab is shown, but
    // the lookup view, which does not poll, keeps its answer.
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && state.timer === null && !location.hash.startsWith("#/lookup")) route();
    });
    try {
      state.session = await api("/v1/console/session");
      showConsole();
    } catch (error) {
      if (error.status === 401 || error.status === 403) showLogin(state.key ? refusal(error) : null);
      else showStatus("The console cannot reach the API: " + error.message, true);
    }
  }

  function refusal(error) {
    if (error.status === 401) return "This key was refused: " + error.message + ". Check it, or create one with `predserve iam create NAME --role admin`.";
    if (error.status === 403) return "This key cannot open the console: " + error.message + ".";
    return "Signing in failed: " + error.message;
  }

  async function signIn(event) {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    state.key = key;
    try {
      state.session = await api("/v1/console/session");
    } catch (error) {
      state.key = null;
      showLogin(refusal(error));
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    $("key").value = "";
    showConsole();
  }

  function signOut() {
    sessionStorage.removeItem(KEY_STORAGE);
    state.key = null;
    state.session = null;
    stopPolling();
    showLogin(null);
  }

  function showStatus(message, isError) {
    const status = $("status");
    status.textContent = message;
    status.className = isError ? "status error" : "status";
    status.hidden = false;
  }

  function showLogin(message) {
    $("status").hidden = true;
    $("view").hidden = true;
    $("nav").hidden = true;
    $("logout").hidden = true;
    $("who").textContent = "";
    $("login").hidden = false;
    const error = $("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("key").focus();
  }

  function showConsole() {
    const session = state.session;
    $("status").hidden = true;
    $("login").hidden = true;
    $("nav").hidden = false;
    $("view").hidden = false;
    $("logout").hidden = !session.auth;
    $("who").textContent = session.auth ? "signed in as " + session.account : "authentication is off (--no-auth)";
    if (!location.hash || location.hash === "#" || location.hash === "#/") location.hash = "#/models";
    else route();
  }

  // ---- views and polling ------------------------------------------------------------------------
  function stopPolling() {
    clearTimeout(state.timer);
    state.timer = null;
    state.generation += 1; // answers of the previous view's requests are dropped
  }

  function route() {
    if (!state.session) return;
    stopPolling();
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    const name = parts[0] || "models";
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("active", link.dataset.view === (name === "model" ? "models" : name));
    }
    const view = $("view");
    const generation = state.generation;
    if (name === "models" && parts[1]) poll(() => renderModel(view, parts[1], generation), POLL_MS.model, generation);
    else if (name === "models") poll(() => renderModels(view, generation), POLL_MS.models, generation);
    else if (name === "traffic") startTraffic(view, generation);
    else if (name === "lookup") renderLookup(view);
    else if (name === "accounts") poll(() => renderAccounts(view, generation), 30000, generation);
    else location.hash = "#/models";
  }

  // Runs ``task`` now and then every ``every`` ms while its view is shown and the tab is visible.
  function poll(task, every, generation) {
    const run = async () => {
      if (generation !== state.generation) return;
      state.timer = null;
      try {
        await task();
      } catch (error) {
        if (generation !== state.generation) return;
        if (error.status === 401 || error.status === 403) { signOut(); showLogin(refusal(error)); return; }
        showProblem(error);
      }
      if (generation === state.generation && !document.hidden) state.timer = setTimeout(run, every);
    };
    run();
  }

  function showProblem(error) {
    const view = $("view");
    let note = view.querySelector(".problem");
    if (!note) {
      note = el("p", { class: "problem error", role: "alert" });
      view.prepend(note);
    }
    note.textContent = error.message;
  }

  function replace(view, generation, ...children) {
    if (generation !== state.generation) return false;
    view.replaceChildren(...children);
    return true;
  }

  // ---- models -----------------------------------------------------------------------------------
  function freshness(model) {
    if (model.max_age === null || model.max_age === undefined) return el("span", { class: "badge neutral" }, "no max_age");
    return model.stale ? el("span", { class: "badge bad" }, "stale") : el("span", { class: "badge good" }, "fresh");
  }

  function eventText(event) {
    if (!event) return "–";
    if (event.event === "published") return "published snapshot " + event.snapshot;
    if (event.event === "rolled_back") return "rolled back to snapshot " + event.snapshot;
    return "refused snapshot " + event.snapshot;
  }

  async function renderModels(view, generation) {
    const { models } = await api("/v1/models");
    const rows = models.map((m) => el("tr", { "data-model": m.model },
      el("td", {}, el("a", { href: "#/models/" + encodeURIComponent(m.model) }, m.model)),
      el("td", { class: "num" }, m.snapshot),
      el("td", { class: "num" }, integer(m.rows)),
      el("td", {}, duration(m.age_seconds), m.max_age !== null ? " of " + duration(m.max_age) : ""),
      el("td", {}, freshness(m)),
      el("td", {}, when(m.published_at)),
      el("td", {}, eventText(m.last_event), m.last_event ? el("span", { class: "muted" }, " · " + when(m.last_event.time)) : ""),
    ));
    replace(view, generation,
      el("h1", {}, "Models"),
      models.length === 0
        ? el("p", { class: "muted" }, "No model has a published snapshot yet: run `predserve export`.")
        : el("table", { id: "models" },
          headers(["model", "snapshot#", "rows#", "age", "freshness", "published", "last event"]),
          el("tbody", {}, rows)),
      el("p", { class: "muted" }, "Updated " + clock(Date.now() / 1000) + "; refreshes every 5 s."));
  }

  // ---- one model --------------------------------------------------------------------------------
  async function renderModel(view, name, generation) {
    const model = await api("/v1/models/" + encodeURIComponent(name));
    const history = model.history;
    const chosen = state.view.snapshot && history.some((h) => h.snapshot === state.view.snapshot && state.view.model === name)
      ? state.view.snapshot : model.snapshot;
    state.view = { model: name, snapshot: chosen };
    const entry = history.find((h) => h.snapshot === chosen);
    replace(view, generation,
      el("p", {}, el("a", { href: "#/models" }, "← all models")),
      el("h1", {}, model.model, " ", freshness(model)),
      el("dl", { class: "facts" },
        fact("current snapshot", model.snapshot), fact("rows", integer(model.rows)),
        fact("age", duration(model.age_seconds) + (model.max_age !== null ? " of " + duration(model.max_age) : "")),
        fact("published", when(model.published_at)),
        fact("updates since publish", integer(model.updates_since_publish)),
        fact("prediction columns", (model.schema || []).map((c) => c[0] + " " + c[1]).join(", ") || "–")),
      el("div", { class: "columns" },
        el("section", { class: "panel" }, el("h2", {}, "Timeline"), timeline(model.events)),
        el("section", { class: "panel" }, el("h2", {}, "Rows per snapshot"), rowsChart(model))),
      el("section", { class: "panel" },
        el("h2", {}, "Predictions of snapshot ", snapshotPicker(history, chosen, name, generation)),
        entry ? profileView(entry, history) : el("p", { class: "muted" }, "This snapshot is no longer kept.")));
  }

  function fact(label, value) {
    return el("div", {}, el("dt", {}, label), el("dd", {}, value));
  }

  function snapshotPicker(history, chosen, name, generation) {
    const select = el("select", { id: "snapshot-picker", "aria-label": "snapshot" },
      history.filter((h) => h.state === "published").map((h) =>
        el("option", { value: h.snapshot, selected: h.snapshot === chosen }, String(h.snapshot) + (h.current ? " (current)" : ""))));
    select.addEventListener("change", () => {
      state.view = { model: name, snapshot: Number(select.value) };
      route();
    });
    return select;
  }

  function timeline(events) {
    if (!events.length) return el("p", { class: "muted" }, "No event recorded yet (snapshots published before the timeline existed have none).");
    return el("ol", { id: "timeline", class: "timeline" }, events.map((event) => {
      const badge = { published: "good", rolled_back: "warn", refused: "bad" }[event.event];
      const label = { published: "published", rolled_back: "rolled back", refused: "refused" }[event.event];
      let text;
      if (event.event === "published") {
        text = "snapshot " + event.snapshot + " (" + integer(event.rows) + " rows)" + (event.previous ? ", replacing " + event.previous : "");
      } else if (event.event === "rolled_back") {
        text = "back to snapshot " + event.snapshot + " (" + integer(event.rows) + " rows), from " + event.previous;
      } else {
        text = "snapshot " + event.snapshot + " (" + integer(event.rows) + " rows)" + (event.previous ? "; snapshot " + event.previous + " kept serving" : "");
      }
      return el("li", { class: "event", "data-event": event.event, "data-snapshot": event.snapshot },
        el("span", { class: "badge " + badge }, label), " ", text,
        el("span", { class: "muted" }, " · " + when(event.time)),
        event.overridden ? el("div", { class: "muted" }, "gates overridden: " + event.overridden.join(", ")) : null,
        event.replayed ? el("div", { class: "muted" }, integer(event.replayed) + " update" + (event.replayed === 1 ? "" : "s") +
          " made meanwhile replayed into it") : null,
        event.gates ? el("ul", { class: "gates" }, event.gates.map((g) => el("li", {}, el("b", {}, g.gate), ": " + g.detail))) : null);
    }));
  }

  function rowsChart(model) {
    const rows = new Map();
    for (const event of [...model.events].reverse()) if (event.event === "published") rows.set(event.snapshot, event.rows);
    for (const h of model.history) if (h.state === "published") rows.set(h.snapshot, h.rows);
    const snapshots = [...rows.keys()].sort((a, b) => a - b).slice(-30);
    if (!snapshots.length) return el("p", { class: "muted" }, "No published snapshot.");
    return barChart({
      id: "rows-chart", categories: snapshots.map((s) => "#" + s),
      series: [{ label: "rows", cls: "s1", values: snapshots.map((s) => rows.get(s)) }],
      format: tick,
    });
  }

  // ---- profiles and drift -----------------------------------------------------------------------
  function profileView(entry, history) {
    if (!entry.profile) return el("p", { class: "muted" }, "Snapshot " + entry.snapshot + " has no profile (exported before profiles).");
    const drift = entry.drift;
    const baseline = drift ? history.find((h) => h.snapshot === drift.baseline) : null;
    const before = baseline && baseline.profile ? baseline.profile : null;
    const intro = drift
      ? "Compared with snapshot " + drift.baseline + ", which was current when it was exported" +
        (before ? "" : " (no longer kept: its distributions are not shown)") + "."
      : "The first profiled snapshot: nothing to compare with.";
    const sample = drift && drift.sample
      ? "Sampled ids: " + integer(drift.sample.ids) + " (" + integer(drift.sample.in_both) + " in both, " +
        integer(drift.sample.appeared) + " appeared, " + integer(drift.sample.disappeared) + " disappeared)."
      : null;
    return el("div", { id: "profile" },
      el("p", {}, intro, " ", sample || ""),
      el("p", { class: "legend" }, before ? [el("span", { class: "key s2" }), " snapshot " + drift.baseline + "  "] : null,
        el("span", { class: "key s1" }), " snapshot " + entry.snapshot),
      Object.entries(entry.profile.columns).map(([column, now]) =>
        columnView(column, now, before ? before.columns[column] : null, entry.profile, before, drift ? drift.columns[column] : null)));
  }

  function columnView(column, now, then, profile, before, figures) {
    return el("div", { class: "column", "data-column": column },
      el("h3", {}, column, " ", el("span", { class: "muted" }, now.kind + ", NULL " + percent(now.nulls / (counted(now, profile) || 1)))),
      figures ? driftLine(figures) : null,
      distribution(now, then, profile, before));
  }

  // A column's drift as the API judged it: its verdict (over / within / not gated), each gated figure
  // against the limit the export used, and the figures only reported. The page compares nothing itself.
  const VERDICT_BADGE = { over: ["warn", "over the limit"], within: ["good", "within the limit"], "not gated": ["neutral", "not gated"] };

  function driftLine(f) {
    const [cls, label] = VERDICT_BADGE[f.verdict];
    const reported = [];
    if (!f.verdicts.some((v) => v.figure === "distance")) reported.push(f.metric_name + " " + fixed(f.distance, 4));
    if (f.changed !== undefined && f.changed !== null && !f.verdicts.some((v) => v.figure === "changed")) reported.push(percent(f.changed) + " of sampled ids changed");
    if (f.moved !== undefined && f.moved !== null && !f.verdicts.some((v) => v.figure === "moved")) reported.push(percent(f.moved) + " of sampled ids moved");
    if (f.mean_abs_change !== undefined && f.mean_abs_change !== null) reported.push("mean absolute change " + fixed(f.mean_abs_change, 4));
    return el("div", { class: "drift", "data-verdict": f.verdict },
      el("p", {}, el("span", { class: "badge " + cls }, label),
        f.metadata ? " reported, not gated: " + f.metadata : "",
        reported.length ? (f.metadata ? " · " : " ") + reported.join(" · ") : ""),
      f.verdicts.length ? el("ul", { class: "verdicts" }, f.verdicts.map((v) =>
        el("li", { "data-gate": v.gate, "data-over": String(v.over) }, el("b", {}, v.gate), ": " + v.why))) : null);
  }

  function shares(counts, total) {
    return counts.map((c) => (total ? c / total : 0));
  }

  function distribution(now, then, profile, before) {
    const series = (values, previous, categories) => {
      const out = [];
      if (previous) out.push({ label: "before", cls: "s2", values: previous });
      out.push({ label: "this snapshot", cls: "s1", values });
      return { categories, series: out, format: (v) => tick(v * 100) + "%" };
    };
    if (now.kind === "categorical") {
      const names = [...new Set([...Object.keys(now.values || {}), ...Object.keys((then && then.values) || {})])];
      const pick = (c) => (c ? [...names.map((n) => (c.values || {})[n] || 0), c.other || 0, c.nulls] : null);
      const categories = [...names, "other", "NULL"];
      const values = pick(now), previous = pick(then);
      return barChart(series(shares(values, counted(now, profile)), previous && shares(previous, counted(then, before)), categories));
    }
    if (now.kind === "probabilities") {
      const labels = Object.keys(now.labels || {}).slice(0, 4);
      const bins = profile.bins || 10;
      const categories = Array.from({ length: bins }, (_, i) => (i / bins).toFixed(1));
      return el("div", { class: "charts" }, labels.map((label) => {
        const values = now.labels[label];
        const previous = then && then.labels && then.labels[label];
        return el("figure", {}, el("figcaption", {}, "P(" + label + ")"),
          barChart(series(shares(values, sum(values)), previous ? shares(previous, sum(previous)) : null, categories)));
      }));
    }
    if (now.kind === "numeric") {
      const list = [];
      if (then && then.counts) list.push({ cls: "s2", low: then.low, high: then.high, counts: then.counts });
      if (now.counts) list.push({ cls: "s1", low: now.low, high: now.high, counts: now.counts });
      return list.length ? histogramChart(list) : el("p", { class: "muted" }, "Every value is NULL.");
    }
    return el("p", { class: "muted" }, "Only NULLs are profiled for this kind of column" +
      (then ? " (before: " + percent(then.nulls / (before.rows || 1)) + ")" : "") + ".");
  }

  const sum = (values) => values.reduce((a, b) => a + b, 0);
  // What a column's counts add up to: the rows, or for a list field of every element the elements listed.
  const counted = (column, profile) => (column.total !== undefined && column.total !== null ? column.total : profile.rows);

  // ---- charts (SVG built with DOM calls) --------------------------------------------------------
  const CHART = { width: 480, height: 170, left: 48, right: 10, top: 10, bottom: 24 };

  function frame(id, maxValue, format) {
    const c = CHART;
    const root = svg("svg", { id, class: "chart", viewBox: "0 0 " + c.width + " " + c.height, role: "img" });
    const top = niceCeiling(maxValue);
    for (let i = 0; i <= 4; i += 1) {
      const value = (top * i) / 4;
      const y = c.height - c.bottom - ((c.height - c.top - c.bottom) * i) / 4;
      root.append(svg("line", { class: "grid", x1: c.left, x2: c.width - c.right, y1: y, y2: y }));
      root.append(svg("text", { class: "tick", x: c.left - 6, y: y + 4, "text-anchor": "end" }, format(value)));
    }
    const scale = (value) => c.height - c.bottom - ((c.height - c.top - c.bottom) * value) / top;
    return { root, scale, top };
  }

  function barChart({ id, categories, series, format }) {
    const c = CHART;
    const maxValue = Math.max(0, ...series.flatMap((s) => s.values));
    const { root, scale } = frame(id, maxValue, format);
    const slot = (c.width - c.left - c.right) / categories.length;
    const width = Math.max(1, (slot * 0.8) / series.length);
    const labelEvery = Math.ceil(categories.length / 12);
    categories.forEach((category, i) => {
      series.forEach((s, j) => {
        const value = s.values[i] || 0;
        const x = c.left + i * slot + slot * 0.1 + j * width;
        const y = scale(value);
        root.append(svg("rect", { class: "bar " + s.cls, x, y, width, height: Math.max(0, c.height - c.bottom - y) },
          svg("title", {}, category + ": " + format(value) + " (" + s.label + ")")));
      });
      if (i % labelEvery === 0) {
        root.append(svg("text", { class: "tick", x: c.left + (i + 0.5) * slot, y: c.height - 8, "text-anchor": "middle" },
          category.length > 12 ? category.slice(0, 11) + "…" : category));
      }
    });
    return root;
  }

  // Histograms of numeric columns, each on its own bin edges, over a common value axis (share per bin).
  function histogramChart(list) {
    const c = CHART;
    const low = Math.min(...list.map((h) => h.low)), high = Math.max(...list.map((h) => h.high));
    const span = high > low ? high - low : 1;
    const bars = list.map((h) => {
      const total = sum(h.counts) || 1;
      const width = h.counts.length > 1 ? (h.high - h.low) / h.counts.length : span / 50;
      return h.counts.map((count, i) => ({ cls: h.cls, from: h.low + i * width, to: h.low + (i + 1) * width, share: count / total }));
    }).flat();
    const { root, scale } = frame(null, Math.max(...bars.map((b) => b.share)), (v) => tick(v * 100) + "%");
    const x = (value) => c.left + ((value - low) / span) * (c.width - c.left - c.right);
    for (const b of bars) {
      const y = scale(b.share);
      root.append(svg("rect", { class: "bar translucent " + b.cls, x: x(b.from), y, width: Math.max(1, x(b.to) - x(b.from)),
        height: Math.max(0, c.height - c.bottom - y) }, svg("title", {}, fixed(b.from, 3) + " to " + fixed(b.to, 3) + ": " + percent(b.share))));
    }
    for (const [value, anchor] of [[low, "start"], [(low + high) / 2, "middle"], [high, "end"]]) {
      root.append(svg("text", { class: "tick", x: x(value), y: c.height - 8, "text-anchor": anchor }, Number(value.toPrecision(4))));
    }
    return root;
  }

  // Lines over time: ``series`` of {label, cls, values} aligned with ``times`` (null: no point).
  function lineChart({ id, times, series, format }) {
    const c = CHART;
    const values = series.flatMap((s) => s.values).filter((v) => v !== null);
    const { root, scale, top } = frame(id, Math.max(0, ...values), format);
    const x = (i) => c.left + (i / Math.max(1, times.length - 1)) * (c.width - c.left - c.right);
    for (const s of series) {
      let d = "";
      let pen = "M";
      s.values.forEach((v, i) => {
        if (v === null) { pen = "M"; return; }
        d += pen + x(i).toFixed(1) + " " + scale(Math.min(v, top)).toFixed(1) + " ";
        pen = "L";
      });
      root.append(svg("path", { class: "line " + s.cls, d: d.trim(), "data-series": s.label }));
    }
    if (times.length) {
      for (const [i, anchor] of [[0, "start"], [times.length - 1, "end"]]) {
        root.append(svg("text", { class: "tick", x: x(i), y: c.height - 8, "text-anchor": anchor }, clock(times[i])));
      }
    }
    root.dataset.max = String(Math.max(0, ...values));
    return root;
  }

  function legend(series) {
    return el("p", { class: "legend" }, series.map((s) => [el("span", { class: "key " + s.cls }), " " + s.label + "  "]));
  }

  // ---- live traffic -----------------------------------------------------------------------------
  const seriesKey = (s) => s.route + "\u0000" + s.model;

  // The view is built once; each answer redraws the charts and the table, and adds new series to the menu
  // (so a menu the user has open stays open).
  function startTraffic(view, generation) {
    const all = seriesKey({ route: "*", model: "*" });
    const local = { series: new Map(), selected: state.view.traffic || all, window: 300 };
    state.view = { traffic: local.selected };
    const picker = el("select", { id: "series-picker", "aria-label": "route and model" });
    const note = el("p", { class: "muted", id: "workers" });
    const charts = el("div", { class: "charts" });
    const table = el("tbody");
    const redraw = () => drawTraffic(local, charts, table);
    picker.addEventListener("change", () => { local.selected = picker.value; state.view = { traffic: picker.value }; redraw(); });
    replace(view, generation, el("h1", {}, "Live traffic"), note,
      el("p", {}, "Show ", picker, " over the last 5 minutes, one point per second."), charts,
      el("h2", {}, "Last minute"),
      el("table", { id: "traffic-table" }, headers(["route", "model", "requests#", "req/s#", "p50 ms#", "p99 ms#", "5xx#", "4xx#"]), table));
    let first = true;
    poll(async () => {
      const answer = await api("/v1/console/traffic?seconds=" + (first ? local.window : 5));
      first = false;
      if (generation !== state.generation) return;
      for (const key of mergeTraffic(local, answer)) {
        const s = local.series.get(key);
        picker.append(el("option", { value: key, selected: key === local.selected }, seriesName(s)));
      }
      note.textContent = workerNote(answer.workers);
      redraw();
    }, POLL_MS.traffic, generation);
  }

  // Keeps ``window`` seconds per series: the first answer brings them all, later ones the last few.
  // Returns the keys of the series seen for the first time.
  function mergeTraffic(local, answer) {
    const oldest = answer.now - local.window + 1;
    const added = [];
    for (const s of answer.series) {
      const key = seriesKey(s);
      let known = local.series.get(key);
      if (!known) {
        known = { route: s.route, model: s.model, points: new Map() };
        local.series.set(key, known);
        added.push(key);
      }
      for (const p of s.points) known.points.set(p[0], p);
      for (const second of known.points.keys()) if (second < oldest) known.points.delete(second);
      known.last_minute = s.last_minute;
    }
    local.now = answer.now;
    return added;
  }

  function drawTraffic(local, charts, table) {
    const times = [];
    for (let t = local.now - local.window + 1; t <= local.now; t += 1) times.push(t);
    const chosen = local.series.get(local.selected) || local.series.get(seriesKey({ route: "*", model: "*" }));
    const column = (index) => times.map((t) => {
      const p = chosen.points.get(t);
      if (!p) return index >= 4 ? null : 0;
      if (index === 2 || index === 3) return p[1] ? p[index] / p[1] : null;
      return p[index];
    });
    const requests = [{ label: "requests/s", cls: "s1", values: column(1) }];
    const latency = [{ label: "p50", cls: "s1", values: column(4) }, { label: "p99", cls: "s3", values: column(5) }];
    const errors = [{ label: "5xx", cls: "s3", values: column(3) }, { label: "4xx", cls: "s2", values: column(2) }];
    charts.replaceChildren(
      el("figure", {}, el("figcaption", {}, "Requests per second"), lineChart({ id: "traffic-requests", times, series: requests, format: tick }), legend(requests)),
      el("figure", {}, el("figcaption", {}, "Latency (ms)"), lineChart({ id: "traffic-latency", times, series: latency, format: tick }), legend(latency)),
      el("figure", {}, el("figcaption", {}, "Error rate"), lineChart({ id: "traffic-errors", times, series: errors, format: (v) => tick(v * 100) + "%" }), legend(errors)));
    table.replaceChildren(...[...local.series.values()].map((s) => el("tr", { "data-route": s.route, "data-model": s.model },
      el("td", {}, s.route === "*" ? "all prediction routes" : s.route), el("td", {}, s.model === "*" ? "all" : s.model || "–"),
      el("td", { class: "num" }, integer(s.last_minute.requests)), el("td", { class: "num" }, fixed(s.last_minute.rate, 2)),
      el("td", { class: "num" }, fixed(s.last_minute.p50_ms, 3)), el("td", { class: "num" }, fixed(s.last_minute.p99_ms, 3)),
      el("td", { class: "num" }, percent(s.last_minute.error_rate, 2)), el("td", { class: "num" }, percent(s.last_minute.client_error_rate, 2)))));
  }

  function seriesName(s) {
    if (s.route === "*") return "all prediction routes";
    return s.route + (s.model ? " · " + s.model : "");
  }

  function workerNote(w) {
    if (w.configured <= 1) return "One worker process (pid " + w.answered_by + ") serves every request: these are all of them.";
    const missing = w.configured - w.reporting.length;
    return w.reporting.length + " of " + w.configured + " worker processes reporting (answered by pid " + w.answered_by + ")" +
      (missing > 0 ? "; the others' figures join within a second" : "") + ".";
  }

  // ---- lookup -----------------------------------------------------------------------------------
  async function renderLookup(view) {
    const generation = state.generation;
    const modelSelect = el("select", { id: "lookup-model", "aria-label": "model" });
    const idInput = el("input", { id: "lookup-id", type: "text", placeholder: "an id, e.g. 42", spellcheck: "false", required: true });
    const result = el("div", { id: "lookup-result" });
    const form = el("form", { class: "inline", id: "lookup-form" },
      el("label", {}, "Model ", modelSelect), el("label", {}, "Id ", idInput), el("button", { type: "submit" }, "Look up"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const path = "/v1/console/lookup/" + encodeURIComponent(modelSelect.value) + "/" + encodeURIComponent(idInput.value);
      const started = performance.now();
      try {
        const answer = await api(path);
        const roundTrip = performance.now() - started;
        result.replaceChildren(
          el("p", {}, answer.found ? el("span", { class: "badge good" }, "found") : el("span", { class: "badge warn" }, answer.body ? "default prediction" : "not found"),
            answer.stale ? el("span", { class: "badge bad" }, "stale") : "",
            " snapshot " + answer.snapshot + " · store read ", el("b", { id: "read-ms" }, fixed(answer.read_ms, 3) + " ms"),
            " · round trip from this browser " + fixed(roundTrip, 1) + " ms"),
          el("pre", { id: "lookup-body" }, answer.body ? JSON.stringify(answer.body, null, 2) : "no prediction for this id"));
      } catch (error) {
        result.replaceChildren(el("p", { class: "error", role: "alert" }, error.message));
      }
    });
    replace(view, generation, el("h1", {}, "Lookup"),
      el("p", { class: "muted" }, "The stored prediction for one id, as GET /v1/models/{model}/predictions/{id} returns it, with the latency of the store read."),
      form, result);
    try {
      const { models } = await api("/v1/models");
      for (const m of models) modelSelect.append(el("option", { value: m.model }, m.model));
      if (!models.length) result.replaceChildren(el("p", { class: "muted" }, "No model has a published snapshot yet."));
    } catch (error) {
      result.replaceChildren(el("p", { class: "error" }, error.message));
    }
  }

  // ---- service accounts -------------------------------------------------------------------------
  async function renderAccounts(view, generation) {
    const { service_accounts: accounts } = await api("/v1/serviceAccounts");
    const models = (roles, role) => (roles[role] ? (roles[role].includes("*") ? "all models" : roles[role].join(", ")) : "–");
    replace(view, generation,
      el("h1", {}, "Service accounts"),
      el("p", { class: "muted" }, "Names, roles and models. Keys are shown only once, by `predserve iam create`; the server keeps their hashes and never returns them."),
      el("table", { id: "accounts" },
        headers(["name", "roles", "reader of", "key id", "created"]),
        el("tbody", {}, accounts.map((a) => el("tr", { "data-account": a.name },
          el("td", {}, a.name), el("td", {}, Object.keys(a.roles).join(", ")), el("td", {}, models(a.roles, "reader")),
          el("td", {}, el("code", {}, a.key_id)), el("td", {}, when(a.created_at)))))));
  }

  start();
})();
