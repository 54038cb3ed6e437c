// neurofabric studio: the page's logic (Apache-2.0). Vanilla JS, no build step, no external
// requests; talks only to the studio's HTTP API (/api/...). Server strings reach the DOM only
// through textContent / attributes, never innerHTML.
//
// Stable element ids (the docs and tests/studio/test_browser.py rely on them):
//   header      #version, #global-error
//   tabs        #tab-new #tab-runs #tab-try #tab-compare -> pages #page-new #page-runs #page-try #page-compare
//   new run     #templates, #template-<id> (card), #template-form, #form-title, #form-error (error
//               without a param), #drop-zone, #file-input, #upload-error, #uploads-list
//               (radios name=data-choice, data-upload=<id>, data-name=<file name>), #datasets-list
//               (radios data-dataset=<id>), #error-data, #params, #param-<name>, #error-<name>,
//               #start-run, #start-status
//   runs        #runs-list, #run-row-<id>, #run-view (data-run = id), #run-title, #run-status (text = status),
//               #run-bar, #run-progress-text, #run-error, #btn-cancel, #btn-resume, #export-model,
//               #export-int4, #btn-try, #run-action-error, #chart-loss / #chart-acc (canvas,
//               data-points = records plotted; in #figure-loss / #figure-acc), #charts-other
//               (one #chart-<metric> per other metric), #run-images
//               (img #image-<name>), #run-summary (the result), #run-params
//   try it      #try-run (select), #try-generate: #prompt #max-tokens #temperature #top-k #top-p
//               #seed #btn-generate #gen-output (data-tokens = tokens received) #gen-rate
//               (data-rate = tokens/s) #gen-error;
//               #try-classify: #classify-text #btn-classify #classify-label #classify-scores
//               #classify-error; #try-query: #field-image #query-value #query-error
//   compare     #compare-runs (checkboxes #compare-<id>), #compare-prompt, #compare-max-tokens,
//               #btn-compare, #compare-status, #compare-error, #compare-table (td.best marks the
//               best tokens_per_s and the smallest bytes_per_token)
"use strict";

const S = {
  info: null, templates: [], tpl: null, uploads: [], runs: [],
  current: null, records: [], es: null, liveFor: null, livePending: false, lastDirect: 0,
  lastImg: 0, paramsKey: "", genES: null, drawQueued: false,
};
const $ = (id) => document.getElementById(id);
const known = (v) => v !== null && v !== undefined;
const COUNTERS = ["done", "elapsed_s", "step", "epoch", "seconds"]; // the x axis, not plotted
const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d"];

// ------------------------------------------------------------------ helpers

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k === "cls") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of [].concat(children)) if (c) node.append(c);
  return node;
}

const show = (node, on) => { node.hidden = !on; };
const setError = (node, msg) => { node.textContent = msg || ""; show(node, Boolean(msg)); };

async function api(path, opts = {}) {
  const res = await fetch(path, opts);
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (!res.ok) {
    const err = new Error((body && body.error) || `${res.status} ${res.statusText} (${path})`);
    err.param = body ? body.param : null;
    err.status = res.status;
    throw err;
  }
  return body;
}

const postJSON = (path, obj) => api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(obj),
});

function fmtNum(v) {
  if (!known(v)) return "–";
  if (typeof v !== "number" || !Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  const a = Math.abs(v);
  if (a >= 1000) return v.toLocaleString("en-US", { maximumFractionDigits: 1 });
  if (a >= 0.01) return v.toLocaleString("en-US", { maximumFractionDigits: 3 });
  return a >= 1e-4 ? String(Number(v.toPrecision(3))) : v.toExponential(2);
}

function fmtBytes(n) {
  if (typeof n !== "number") return fmtNum(n);
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0, v = n;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

function fmtDuration(s) {
  if (!known(s) || !Number.isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

const fmtTime = (unix) => (unix ? new Date(unix * 1000).toLocaleString() : "");

function progressText(p, withClock = true) {
  if (!p) return "waiting for the first report…";
  return [
    withClock && (p.total ? `${fmtNum(p.done)} / ${fmtNum(p.total)} ${p.unit}` : `${fmtNum(p.done)} ${p.unit}`),
    known(p.fraction) && `${Math.round(p.fraction * 100)} %`,
    withClock && `elapsed ${fmtDuration(p.elapsed_s)}`,
    known(p.eta_s) && `${fmtDuration(p.eta_s)} left`,
  ].filter(Boolean).join(" · ");
}

// ------------------------------------------------------------------ tabs

function showPage(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.page === name);
  for (const page of document.querySelectorAll(".page")) show(page, page.id === `page-${name}`);
  if (name === "try") renderTryRuns();
  if (name === "compare") renderCompareRuns();
  if (name === "runs") redrawCharts();
}

// ------------------------------------------------------------------ new run

function renderTemplates() {
  const box = $("templates");
  box.replaceChildren();
  for (const t of S.templates) {
    box.append(el("button", { id: `template-${t.id}`, cls: "card", onclick: () => chooseTemplate(t) }, [
      el("div", { cls: "card-title", text: t.title }),
      el("span", { cls: "engine", text: t.engine }),
      el("p", { cls: "muted small", text: t.description }),
    ]));
  }
}

function chooseTemplate(t) {
  S.tpl = t;
  for (const card of document.querySelectorAll(".card")) card.classList.toggle("selected", card.id === `template-${t.id}`);
  show($("template-form"), true);
  $("form-title").textContent = t.title;
  $("form-description").textContent = t.description;
  clearFormErrors();
  renderParams(t);
  const kinds = t.data.kinds;
  show($("data-section"), kinds.length > 0 || t.data.datasets.length > 0);
  $("file-input").accept = kinds.map((k) => ({ text: ".txt,text/plain", csv: ".csv", image: "image/*" }[k] || "")).join(",");
  $("upload-hint").textContent = kinds.length
    ? `Accepted kinds: ${kinds.join(", ")}${S.info ? ` · at most ${fmtBytes(S.info.max_upload_bytes)}` : ""}`
    : "This template takes no uploads.";
  show($("drop-zone"), kinds.length > 0);
  renderDataChoices(null);
}

function renderParams(t) {
  const grid = $("params");
  grid.replaceChildren();
  for (const p of t.params) {
    let input;
    if (p.type === "choice") {
      input = el("select", { id: `param-${p.name}` }, p.choices.map((c) => el("option", { value: c, text: c })));
      input.value = p.default;
    } else if (p.type === "bool") {
      input = el("input", { id: `param-${p.name}`, type: "checkbox" });
      input.checked = Boolean(p.default);
    } else {
      input = el("input", {
        id: `param-${p.name}`, type: "number", min: p.min, max: p.max,
        step: p.type === "int" ? "1" : "any",
      });
      input.value = known(p.default) ? String(p.default) : "";
    }
    input.title = p.help || "";
    const range = known(p.min) || known(p.max) ? ` [${known(p.min) ? p.min : "…"}, ${known(p.max) ? p.max : "…"}]` : "";
    grid.append(el("div", { cls: `param param-${p.type}` }, [
      el("label", { for: `param-${p.name}`, text: p.name }),
      input,
      el("small", { cls: "muted", text: `${p.help || ""}${range}` }),
      el("div", { id: `error-${p.name}`, cls: "error field-error", hidden: true }),
    ]));
  }
}

function readParams() {
  const out = {};
  for (const p of S.tpl.params) {
    const input = $(`param-${p.name}`), raw = input.value.trim();
    // an unparsable number goes to the server as typed, so its error names it
    if (p.type === "bool") out[p.name] = input.checked;
    else if (p.type === "choice") out[p.name] = input.value;
    else out[p.name] = raw !== "" && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  }
  return out;
}

function clearFormErrors() {
  setError($("form-error"), "");
  setError($("error-data"), "");
  for (const node of document.querySelectorAll("#params .field-error")) setError(node, "");
  for (const node of document.querySelectorAll("#params .invalid")) node.classList.remove("invalid");
}

function showFormError(err) {
  // next to the field the API names, else at the top of the form
  const box = (err.param && $(`error-${err.param}`)) || $("form-error");
  setError(box, err.message);
  const input = err.param && $(`param-${err.param}`);
  if (input && box !== $("form-error")) input.classList.add("invalid");
  (input || box).scrollIntoView({ block: "center" });
}

function dataChoice() {
  const d = (document.querySelector("input[name=data-choice]:checked") || {}).dataset || {};
  return d.upload ? { upload: d.upload } : d.dataset ? { dataset: d.dataset } : null;
}

function renderDataChoices(selectUpload) {
  const t = S.tpl;
  if (!t) return;
  const prev = dataChoice();
  const ups = $("uploads-list"), sets = $("datasets-list");
  ups.replaceChildren();
  sets.replaceChildren();
  const radio = (attrs, label, info) => el("label", { cls: "choice" }, [
    el("input", Object.assign({ type: "radio", name: "data-choice" }, attrs)),
    el("span", { text: label }), info ? el("small", { cls: "muted", text: ` ${info}` }) : null,
  ]);
  const matching = S.uploads.filter((u) => t.data.kinds.includes(u.kind));
  for (const u of matching) {
    ups.append(radio({ id: `upload-${u.id}`, "data-upload": u.id, "data-name": u.name },
      u.name, `${u.kind} · ${fmtBytes(u.bytes)} · ${u.info}`));
  }
  if (!matching.length) ups.append(el("p", { cls: "muted small", text: "none yet" }));
  for (const d of t.data.datasets) sets.append(radio({ id: `dataset-${d.id}`, "data-dataset": d.id }, d.title, d.id));
  if (!t.data.required) sets.append(radio({ id: "data-none", "data-none": "1" }, "no data", ""));
  if (!t.data.datasets.length && t.data.required) sets.append(el("p", { cls: "muted small", text: "none" }));
  // keep the previous choice, else the new upload, else the first offered
  let pick = null;
  if (selectUpload) pick = $(`upload-${selectUpload}`);
  if (!pick && prev && prev.upload) pick = $(`upload-${prev.upload}`);
  if (!pick && prev && prev.dataset) pick = $(`dataset-${prev.dataset}`);
  if (!pick) pick = document.querySelector("input[name=data-choice]");
  if (pick) pick.checked = true;
}

async function loadUploads(selectUpload) {
  try {
    S.uploads = await api("/api/uploads");
    renderDataChoices(selectUpload);
  } catch (err) { setError($("upload-error"), err.message); }
}

async function uploadFiles(files) {
  setError($("upload-error"), "");
  for (const file of files) {
    try {
      const up = await api(`/api/uploads?filename=${encodeURIComponent(file.name)}`, { method: "POST", body: file });
      await loadUploads(up.id);
    } catch (err) {
      setError($("upload-error"), err.message);
    }
  }
  $("file-input").value = "";
}

async function startRun() {
  if (!S.tpl) return;
  clearFormErrors();
  const btn = $("start-run");
  btn.disabled = true;
  $("start-status").textContent = "checking…";
  try {
    const checked = await postJSON(`/api/templates/${encodeURIComponent(S.tpl.id)}/validate`, { params: readParams() });
    $("start-status").textContent = "starting…";
    const run = await postJSON("/api/runs", { template: S.tpl.id, params: checked.params, data: dataChoice() });
    $("start-status").textContent = "";
    await refreshRuns();
    showPage("runs");
    selectRun(run);
  } catch (err) {
    $("start-status").textContent = "";
    showFormError(err);
  } finally {
    btn.disabled = false;
  }
}

// ------------------------------------------------------------------ runs list

async function refreshRuns() {
  const started = performance.now();
  try {
    S.runs = await api("/api/runs");
    setError($("global-error"), "");
  } catch (err) {
    setError($("global-error"), `cannot list the runs: ${err.message}`);
    return;
  }
  renderRunsList();
  if (S.current && started > S.lastDirect) {
    const fresh = S.runs.find((r) => r.id === S.current.id);
    if (fresh) applyRun(fresh, false);
  }
  if (!$("page-try").hidden) renderTryRuns();
  if (!$("page-compare").hidden) renderCompareRuns();
}

function renderRunsList() {
  const box = $("runs-list");
  box.replaceChildren();
  show($("runs-empty"), S.runs.length === 0);
  for (const r of S.runs) {
    const p = r.progress, running = r.status === "running";
    const bar = el("div", { cls: "progress thin" }, [el("div", { cls: "fill" })]);
    bar.firstChild.style.width = `${Math.round(((p && p.fraction) || (r.status === "done" ? 1 : 0)) * 100)}%`;
    const line = [p && progressText(running ? p : { ...p, eta_s: null }, false), fmtTime(r.created)];
    box.append(el("div", {
      id: `run-row-${r.id}`, cls: `run-row${S.current && S.current.id === r.id ? " selected" : ""}`,
      onclick: () => selectRun(r),
    }, [
      el("div", { cls: "run-row-head" }, [
        el("span", { cls: "run-title", text: r.title }),
        el("span", { cls: `badge status-${r.status}`, text: r.status }),
      ]),
      el("div", { cls: "muted small mono", text: r.id }),
      bar,
      el("div", { cls: "muted small", text: line.filter(Boolean).join(" · ") }),
    ]));
  }
}

// ------------------------------------------------------------------ run view

function selectRun(run) {
  closeEvents();
  S.current = null;
  S.records = [];
  S.paramsKey = "";
  S.lastDirect = performance.now();
  $("run-images").replaceChildren();
  setError($("run-action-error"), "");
  show($("run-view"), true);
  applyRun(run, true);
  startLive();
  renderRunsList();
}

function applyRun(run, direct) {
  if (direct) S.lastDirect = performance.now();
  const prev = S.current;
  S.current = run;
  renderRun(run);
  if (prev && prev.id === run.id && prev.status !== run.status) {
    refreshImages(true);
    if (run.status === "running" && !S.es && !S.livePending) startLive();
  }
}

function renderRun(r) {
  $("run-view").dataset.run = r.id;
  $("run-title").textContent = `${r.title} · ${r.id}`;
  const badge = $("run-status");
  badge.textContent = r.status;
  badge.className = `badge status-${r.status}`;
  renderProgress(r.progress && (r.status === "running" ? r.progress : { ...r.progress, eta_s: null }), r.status);
  setError($("run-error"), r.error || "");
  show($("btn-cancel"), r.status === "running");
  show($("btn-resume"), Boolean(r.can_resume));
  const exportable = (r.status === "done" || r.status === "cancelled") && r.checkpoint;
  for (const kind of ["model", "int4"]) {
    const a = $(`export-${kind}`);
    const on = exportable && (r.exports || []).includes(kind);
    show(a, on);
    if (on) a.href = `/api/runs/${encodeURIComponent(r.id)}/export?kind=${kind}`;
    else a.removeAttribute("href");
  }
  show($("btn-try"), Boolean(r.try) && r.status !== "running");
  const key = JSON.stringify([r.id, r.params, r.data, r.summary]);
  if (key !== S.paramsKey) {
    S.paramsKey = key;
    const row = ([k, v]) => el("tr", {}, [el("th", { text: k }), el("td", { text: typeof v === "object" && v !== null ? JSON.stringify(v) : fmtNum(v) })]);
    $("run-params").replaceChildren(...[...Object.entries(r.params || {}), ["data", r.data || "none"], ["created", fmtTime(r.created)]].map(row));
    $("run-summary").replaceChildren(...Object.entries(r.summary || {}).map(row));
    show($("run-summary-box"), Boolean(r.summary && Object.keys(r.summary).length));
  }
  const box = $("run-images");
  for (const name of r.images || []) {
    if (!$(`image-${name}`)) {
      box.append(el("figure", {}, [
        el("figcaption", { text: name }),
        el("img", { id: `image-${name}`, alt: name, src: imageUrl(r.id, name) }),
      ]));
    }
  }
}

function renderProgress(p, status) {
  $("run-bar").style.width = `${Math.round(((p && p.fraction) || (status === "done" ? 1 : 0)) * 100)}%`;
  $("run-progress-text").textContent = progressText(p);
}

function imageUrl(id, name) {
  return `/api/runs/${encodeURIComponent(id)}/images/${encodeURIComponent(name)}.png?t=${Date.now()}`;
}

function refreshImages(force) {
  const now = Date.now();
  if (!S.current || (!force && now - S.lastImg < 3000)) return;
  S.lastImg = now;
  for (const name of S.current.images || []) {
    const img = $(`image-${name}`);
    if (img) img.src = imageUrl(S.current.id, name);
  }
}

async function startLive() {
  const run = S.current;
  if (!run) return;
  S.liveFor = run.id;
  S.livePending = true;
  try {
    const recs = await api(`/api/runs/${encodeURIComponent(run.id)}/metrics`);
    if (S.liveFor !== run.id) return;
    S.records = [];
    for (const rec of recs) addRecord(rec, false);
    redrawCharts();
  } catch (err) {
    setError($("run-action-error"), `metrics: ${err.message}`);
  } finally {
    if (S.liveFor === run.id) S.livePending = false;
  }
  if (S.current && S.current.id === run.id && S.current.status === "running") openEvents(run.id);
}

function openEvents(id) {
  closeEvents();
  const es = new EventSource(`/api/runs/${encodeURIComponent(id)}/events`);
  S.es = es;
  es.addEventListener("progress", (e) => {
    if (S.es !== es) return;
    addRecord(JSON.parse(e.data), true);
    refreshImages(false);
  });
  es.addEventListener("status", (e) => {
    if (S.es !== es) return;
    const run = JSON.parse(e.data);
    if (run.status !== "running") closeEvents();
    applyRun(run, true);
    refreshRuns();
  });
  es.onerror = () => { if (es.readyState === EventSource.CLOSED && S.es === es) S.es = null; };
}

function closeEvents() {
  if (S.es) S.es.close();
  S.es = null;
}

function addRecord(rec, draw) {
  const recs = S.records;
  // a resumed run restarts from its checkpoint: later records of the old attempt give way
  while (recs.length && recs[recs.length - 1].done >= rec.done) recs.pop();
  recs.push(rec);
  if (draw && S.current) {
    // the list refresh brings the server's progress every 2 s; between, the records move it
    const p = Object.assign({ total: null, unit: "done" }, S.current.progress, { done: rec.done, elapsed_s: rec.elapsed_s });
    if (p.total) Object.assign(p, { fraction: Math.min(1, p.done / p.total), eta_s: p.done > 0 ? (p.elapsed_s * (p.total - p.done)) / p.done : null });
    S.current.progress = p;
    renderProgress(p, S.current.status);
  }
  if (draw && !S.drawQueued) {
    S.drawQueued = true;
    requestAnimationFrame(() => { S.drawQueued = false; redrawCharts(); });
  }
}

async function runAction(action) {
  if (!S.current) return;
  setError($("run-action-error"), "");
  try {
    const run = await postJSON(`/api/runs/${encodeURIComponent(S.current.id)}/${action}`, {});
    applyRun(run, true);
    if (run.status === "running" && !S.es && !S.livePending) startLive();
    refreshRuns();
  } catch (err) {
    setError($("run-action-error"), err.message);
  }
}

// ------------------------------------------------------------------ charts

function metricGroup(name) {
  if (/acc|f1|precision|recall/i.test(name)) return "acc";
  if (/loss|nll|bpc|bpb|bits|ppl|perplex|mse|error|energy|nats/i.test(name)) return "loss";
  return "other";
}

function redrawCharts() {
  if ($("page-runs").hidden || !S.current) return;
  const groups = { loss: [], acc: [], other: [] };
  const names = [];
  for (const rec of S.records) {
    for (const [k, v] of Object.entries(rec)) {
      if (!COUNTERS.includes(k) && (typeof v === "number" || v === null) && !names.includes(k)) names.push(k);
    }
  }
  for (const name of names) {
    const pts = S.records.filter((r) => typeof r[name] === "number" && Number.isFinite(r[name])).map((r) => [r.done, r[name]]);
    groups[metricGroup(name)].push({ name, pts });
  }
  const unit = (S.current.progress && S.current.progress.unit) || "done";
  show($("figure-loss"), groups.loss.length > 0 || !groups.acc.length);
  show($("figure-acc"), groups.acc.length > 0);
  const box = $("charts-other");
  const wanted = groups.other.map((s) => `chart-${s.name}`);
  for (const fig of [...box.children]) if (!wanted.includes(fig.dataset.chart)) fig.remove();
  for (const s of groups.other) {
    if (!$(`chart-${s.name}`)) {
      const canvas = el("canvas", { id: `chart-${s.name}`, "data-points": "0" });
      box.append(el("figure", { "data-chart": `chart-${s.name}` }, [el("figcaption", { text: s.name }), canvas]));
    }
  }
  drawChart($("chart-loss"), groups.loss, unit);
  if (groups.acc.length) drawChart($("chart-acc"), groups.acc, unit);
  for (const s of groups.other) drawChart($(`chart-${s.name}`), [s], unit);
}

function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

function ticks(lo, hi, count, integer) {
  if (!(hi > lo)) { const pad = Math.abs(lo) * 0.1 || 1; lo -= pad; hi += pad; }
  const step = integer ? Math.max(1, niceStep(hi - lo, count)) : niceStep(hi - lo, count);
  const start = Math.floor(lo / step) * step, end = Math.ceil(hi / step) * step;
  const out = [];
  for (let v = start; v <= end + step / 2; v += step) out.push(Number(v.toPrecision(12)));
  return { lo: start, hi: end, step, out };
}

function tickLabel(v, step) {
  const a = Math.abs(v);
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(3))}k`;
  if (a !== 0 && a < 1e-3) return v.toExponential(1);
  const dec = Math.max(0, Math.min(6, -Math.floor(Math.log10(step))));
  return v.toFixed(dec);
}

// Draws line series [{name, pts: [[x, y], ...]}] with auto-scaled, labelled axes and a legend;
// sets canvas.dataset.points to the number of distinct x values plotted.
function drawChart(canvas, series, xlabel) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 240;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const ink = css.getPropertyValue("--muted").trim() || "#666", grid = css.getPropertyValue("--line").trim() || "#ddd";
  ctx.font = "12px system-ui, sans-serif";
  const xs = new Set();
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series) {
    for (const [x, y] of s.pts) {
      xs.add(x);
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  }
  canvas.dataset.points = String(xs.size);
  if (!xs.size) {
    ctx.fillStyle = ink;
    ctx.textAlign = "center";
    ctx.fillText("waiting for data…", w / 2, h / 2);
    return;
  }
  const xt = ticks(x0, x1, 6, true), yt = ticks(y0, y1, 5, false);
  const L = 62, R = 14, T = 30, B = 38;
  const px = (x) => L + ((x - xt.lo) / (xt.hi - xt.lo)) * (w - L - R);
  const py = (y) => h - B - ((y - yt.lo) / (yt.hi - yt.lo)) * (h - T - B);
  ctx.lineWidth = 1;
  ctx.fillStyle = ink;
  ctx.strokeStyle = grid;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of yt.out) {
    ctx.beginPath(); ctx.moveTo(L, py(v)); ctx.lineTo(w - R, py(v)); ctx.stroke();
    ctx.fillText(tickLabel(v, yt.step), L - 6, py(v));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const v of xt.out) {
    ctx.beginPath(); ctx.moveTo(px(v), T); ctx.lineTo(px(v), h - B); ctx.stroke();
    ctx.fillText(tickLabel(v, xt.step), px(v), h - B + 5);
  }
  ctx.fillText(xlabel, L + (w - L - R) / 2, h - 16);
  ctx.strokeStyle = ink;
  ctx.strokeRect(L, T, w - L - R, h - T - B);
  let lx = L;
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.pts.forEach(([x, y], k) => (k ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
    ctx.stroke();
    if (s.pts.length < 60) for (const [x, y] of s.pts) { ctx.beginPath(); ctx.arc(px(x), py(y), 2.5, 0, 7); ctx.fill(); }
    ctx.fillRect(lx, 10, 12, 12);
    ctx.fillStyle = ink;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    const last = s.pts.length ? ` ${fmtNum(s.pts[s.pts.length - 1][1])}` : "";
    const label = `${s.name}${last}`;
    ctx.fillText(label, lx + 16, 16);
    lx += 16 + ctx.measureText(label).width + 18;
  });
}

// ------------------------------------------------------------------ try it

function renderTryRuns() {
  const sel = $("try-run");
  const runs = S.runs.filter((r) => r.try && r.status !== "running");
  const keep = sel.value;
  const key = runs.map((r) => r.id).join(",");
  if (sel.dataset.key !== key) {
    sel.dataset.key = key;
    sel.replaceChildren(...runs.map((r) => el("option", { value: r.id, text: `${r.title} · ${r.id} (${r.status})` })));
    if (runs.some((r) => r.id === keep)) sel.value = keep;
  }
  show($("try-empty"), runs.length === 0);
  show(sel.parentElement, runs.length > 0);
  renderTryPanel();
}

function tryRun() {
  return S.runs.find((r) => r.id === $("try-run").value) || null;
}

function renderTryPanel() {
  const run = tryRun();
  const kind = run ? run.try : null;
  show($("try-generate"), kind === "generate");
  show($("try-classify"), kind === "classify");
  show($("try-query"), kind === "query");
  const img = $("field-image");
  if (kind === "query" && img.dataset.run !== run.id) {
    img.dataset.run = run.id;
    img.src = `/api/runs/${encodeURIComponent(run.id)}/field.png?t=${Date.now()}`;
  }
}

function openTry() {
  if (!S.current) return;
  showPage("try");
  $("try-run").value = S.current.id;
  renderTryPanel();
}

function generate() {
  const run = tryRun();
  if (!run) return;
  if (S.genES) S.genES.close();
  const out = $("gen-output"), rate = $("gen-rate");
  out.textContent = "";
  rate.textContent = "generating…";
  delete rate.dataset.rate;
  setError($("gen-error"), "");
  const fields = { prompt: "prompt", max_tokens: "max-tokens", temperature: "temperature", top_k: "top-k", top_p: "top-p", seed: "seed" };
  const q = Object.entries(fields).map(([k, id]) => `${k}=${encodeURIComponent($(id).value)}`).join("&");
  const url = `/api/runs/${encodeURIComponent(run.id)}/generate?${q}`;
  const es = new EventSource(url);
  S.genES = es;
  let got = 0;
  out.dataset.tokens = "0";
  const finish = () => { es.close(); if (S.genES === es) S.genES = null; $("btn-generate").disabled = false; };
  $("btn-generate").disabled = true;
  out.append(el("span", { cls: "prompt-echo", text: $("prompt").value }));
  es.addEventListener("token", (e) => { out.dataset.tokens = String(++got); out.append(JSON.parse(e.data).text); });
  es.addEventListener("done", (e) => {
    const d = JSON.parse(e.data);
    rate.dataset.rate = String(d.tokens_per_s);
    rate.textContent = `${fmtNum(d.tokens_per_s)} tokens/s · ${fmtNum(d.tokens)} tokens`;
    finish();
  });
  es.addEventListener("error", async (e) => {
    finish();
    rate.textContent = "";
    if (e.data) { setError($("gen-error"), JSON.parse(e.data).error); return; }
    if (got) { setError($("gen-error"), "the connection to the studio was lost"); return; }
    try { await api(url); setError($("gen-error"), "the generation stream failed"); } catch (err) { setError($("gen-error"), err.message); }
  });
}

async function classify() {
  const run = tryRun();
  if (!run) return;
  setError($("classify-error"), "");
  try {
    const res = await postJSON(`/api/runs/${encodeURIComponent(run.id)}/classify`, { text: $("classify-text").value });
    $("classify-label").textContent = res.label;
    const rows = Object.entries(res.scores).sort((a, b) => b[1] - a[1]).map(([label, v]) => {
      const bar = el("div", { cls: "progress thin" }, [el("div", { cls: "fill" })]);
      bar.firstChild.style.width = `${Math.max(0, Math.min(1, v)) * 100}%`;
      return el("div", { cls: "score" }, [el("span", { text: label }), bar, el("span", { cls: "mono", text: fmtNum(v) })]);
    });
    $("classify-scores").replaceChildren(...rows);
  } catch (err) { setError($("classify-error"), err.message); }
}

async function queryField(e) {
  const run = tryRun();
  const img = e.currentTarget;
  if (!run || !img.clientWidth) return;
  const x = e.offsetX / img.clientWidth, y = e.offsetY / img.clientHeight;
  setError($("query-error"), "");
  try {
    const res = await postJSON(`/api/runs/${encodeURIComponent(run.id)}/query`, { points: [[x, y]] });
    $("query-value").textContent = `(${x.toFixed(3)}, ${y.toFixed(3)}) → [${res.values[0].map(fmtNum).join(", ")}]`;
  } catch (err) { setError($("query-error"), err.message); }
}

// ------------------------------------------------------------------ compare

function renderCompareRuns() {
  const box = $("compare-runs");
  const runs = S.runs.filter((r) => r.template === "seq-char" && (r.status === "done" || (r.status === "cancelled" && r.checkpoint)));
  const key = runs.map((r) => `${r.id}:${r.status}`).join(",");
  if (box.dataset.key === key) return;
  const checked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.dataset.run));
  box.dataset.key = key;
  box.replaceChildren(...runs.map((r) => el("label", { cls: "choice" }, [
    el("input", { type: "checkbox", id: `compare-${r.id}`, "data-run": r.id, checked: checked.has(r.id) }),
    el("span", { text: `${r.id} · ${(r.params || {}).arch || ""} · ${r.status}` }),
  ])));
  show($("compare-empty"), runs.length === 0);
}

async function compare() {
  const ids = [...document.querySelectorAll("#compare-runs input:checked")].map((i) => i.dataset.run);
  setError($("compare-error"), "");
  $("compare-status").textContent = "measuring…";
  $("btn-compare").disabled = true;
  try {
    const res = await postJSON("/api/compare", {
      runs: ids, prompt: $("compare-prompt").value, max_tokens: Number($("compare-max-tokens").value),
    });
    renderCompareTable(res.rows);
    $("compare-status").textContent = "";
  } catch (err) {
    $("compare-status").textContent = "";
    setError($("compare-error"), err.message);
  } finally { $("btn-compare").disabled = false; }
}

function renderCompareTable(rows) {
  const table = $("compare-table");
  const cols = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  const nums = (k) => rows.map((r) => r[k]).filter((v) => typeof v === "number");
  const best = { tokens_per_s: Math.max(...nums("tokens_per_s")), bytes_per_token: Math.min(...nums("bytes_per_token")) };
  const cell = (k, v) => {
    const text = /bytes$/.test(k) ? fmtBytes(v) : fmtNum(v);
    return el("td", { cls: `${typeof v === "number" ? "num" : ""}${k in best && v === best[k] ? " best" : ""}`, title: String(v), text });
  };
  table.replaceChildren(
    el("thead", {}, [el("tr", {}, cols.map((k) => el("th", { text: k })))]),
    el("tbody", {}, rows.map((r) => el("tr", {}, cols.map((k) => cell(k, r[k]))))),
  );
}

// ------------------------------------------------------------------ start

function wire() {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showPage(tab.dataset.page));
  const clicks = {
    "start-run": startRun, "btn-cancel": () => runAction("cancel"), "btn-resume": () => runAction("resume"),
    "btn-try": openTry, "btn-generate": generate, "btn-classify": classify, "field-image": queryField,
    "btn-compare": compare,
  };
  for (const [id, fn] of Object.entries(clicks)) $(id).addEventListener("click", fn);
  $("try-run").addEventListener("change", renderTryPanel);
  $("file-input").addEventListener("change", (e) => uploadFiles([...e.target.files]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); uploadFiles([...e.dataTransfer.files]); });
  let resize = 0;
  window.addEventListener("resize", () => { clearTimeout(resize); resize = setTimeout(redrawCharts, 150); });
}

async function init() {
  wire();
  try {
    S.info = await api("/api/info");
    $("version").textContent = `v${S.info.version}`;
    S.templates = await api("/api/templates");
    renderTemplates();
  } catch (err) {
    setError($("global-error"), `cannot reach the studio: ${err.message}`);
  }
  await loadUploads(null);
  await refreshRuns();
  setInterval(refreshRuns, 2000);
}

init();
