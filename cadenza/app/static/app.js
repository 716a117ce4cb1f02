// Cadenza studio page: builds the form request, polls the job, shows the result and the history.
// No libraries and no external assets: everything the page loads comes from the studio itself.
"use strict";

const $ = (sel) => document.querySelector(sel);
const HEADERS = { "X-Requested-With": "cadenza" };
const state = { options: null, points: [], drawing: false, polling: null };

function setStatus(text, kind = "") {
  const el = $("#status");
  el.textContent = text;
  el.className = kind;
}

function errorText(body, fallback) {
  if (body && body.error) return body.hint ? `${body.error} — ${body.hint}` : body.error;
  return fallback;
}

async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: { ...HEADERS, ...(init.headers || {}) } });
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  return { res, body };
}

// ---------------------------------------------------------------- form visibility
function syncModes() {
  document.querySelectorAll("[data-for]").forEach((el) => {
    const sel = document.getElementById(el.dataset.for);
    el.hidden = !el.dataset.mode.split(" ").includes(sel.value);
  });
  const file = $("#melody-file");
  file.accept = $("#melody-mode").value === "midi" ? ".mid,.midi" : ".wav,.flac,.ogg,.mp3";
  drawCanvas();
}

// ---------------------------------------------------------------- drawn dynamics
const DB_TOP = 0, DB_BOTTOM = -60;

function canvasPoint(ev) {
  const c = $("#dyn-canvas");
  const r = c.getBoundingClientRect();
  const x = Math.min(Math.max((ev.clientX - r.left) / r.width, 0), 1);
  const y = Math.min(Math.max((ev.clientY - r.top) / r.height, 0), 1);
  return [x, DB_TOP + (DB_BOTTOM - DB_TOP) * y];
}

function addPoint(p) {
  // keep the curve a function of time: a new point replaces any at or after its time while drawing left
  state.points = state.points.filter((q) => Math.abs(q[0] - p[0]) > 0.004);
  state.points.push(p);
  state.points.sort((a, b) => a[0] - b[0]);
  drawCanvas();
}

function drawCanvas() {
  const c = $("#dyn-canvas");
  if (!c) return;
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = "#ddd";
  g.lineWidth = 1;
  for (let db = -10; db > DB_BOTTOM; db -= 10) {
    const y = ((db - DB_TOP) / (DB_BOTTOM - DB_TOP)) * c.height;
    g.beginPath(); g.moveTo(0, y); g.lineTo(c.width, y); g.stroke();
  }
  if (!state.points.length) return;
  g.strokeStyle = "#1f77b4";
  g.lineWidth = 2;
  g.beginPath();
  state.points.forEach(([x, db], i) => {
    const px = x * c.width, py = ((db - DB_TOP) / (DB_BOTTOM - DB_TOP)) * c.height;
    if (i === 0) g.moveTo(px, py); else g.lineTo(px, py);
  });
  g.stroke();
}

function drawnPointsJSON(duration) {
  const pts = state.points.map(([x, db]) => [Math.round(x * duration * 1000) / 1000, Math.round(db * 10) / 10]);
  const out = [];
  for (const p of pts) if (!out.length || p[0] > out[out.length - 1][0]) out.push(p);
  return JSON.stringify(out);
}

// ---------------------------------------------------------------- submit
function buildForm() {
  const form = $("#gen-form");
  const fd = new FormData();
  form.querySelectorAll("[name]").forEach((el) => {
    if (el.type === "file") return;
    if (el.closest("[hidden]") && !el.matches("select[id$='-mode']")) return;
    fd.append(el.name, el.value);
  });
  const melodyMode = $("#melody-mode").value;
  if (melodyMode === "midi" || melodyMode === "audio") {
    const f = $("#melody-file").files[0];
    if (f) fd.append("melody_file", f, f.name);
  }
  if ($("#rhythm-mode").value === "audio") {
    const f = $("#rhythm-file").files[0];
    if (f) fd.append("rhythm_file", f, f.name);
  }
  if ($("#dynamics-mode").value === "drawn") {
    fd.append("dynamics_points", drawnPointsJSON(parseFloat($("#duration").value) || 6));
  }
  return fd;
}

async function submitForm(ev) {
  ev.preventDefault();
  const button = $("#generate");
  button.disabled = true;
  setStatus("sending…");
  try {
    const { res, body } = await api("/api/generate", { method: "POST", body: buildForm() });
    if (res.status === 202) {
      await followJob(body.id);
    } else if (res.status === 503) {
      setStatus(errorText(body, "the studio is busy, try again in a few seconds"), "busy");
    } else {
      setStatus(errorText(body, `error ${res.status}`), "error");
    }
  } catch (e) {
    setStatus(`cannot reach the studio (${e})`, "error");
  } finally {
    button.disabled = false;
  }
}

async function followJob(jobId) {
  for (;;) {
    const { res, body } = await api(`/api/jobs/${jobId}`);
    if (!res.ok) { setStatus(errorText(body, `error ${res.status}`), "error"); return; }
    if (body.status === "done") {
      const g = body.generation;
      setStatus(`done in ${g.info.timings ? g.info.timings.total_s : "?"} s`, "ok");
      showResult(g);
      await loadHistory();
      return;
    }
    if (body.status === "failed") {
      setStatus(errorText(body.error, "generation failed"), "error");
      await loadHistory();
      return;
    }
    setStatus(body.status === "queued" ? `waiting in the queue (${body.position} ahead)…` : "generating…");
    await new Promise((r) => setTimeout(r, 400));
  }
}

// ---------------------------------------------------------------- result + history
function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

function showResult(g) {
  $("#result").hidden = false;
  $("#result-id").textContent = `#${g.id}`;
  if (g.urls.audio) $("#result-audio").src = g.urls.audio;
  if (g.urls.plot) $("#result-plot").src = g.urls.plot;
  const dl = $("#downloads");
  dl.replaceChildren();
  for (const [kind, label] of [["audio", "audio (.wav)"], ["controls_zip", "controls (CSV zip)"], ["controls_npz", "controls (.npz)"], ["plot", "figure (.png)"]]) {
    if (!g.urls[kind]) continue;
    const a = link(`${g.urls[kind]}?download=1`, label);
    a.className = `download-${kind}`;
    dl.append(a, " ");
  }
  const a = g.info.adherence || {};
  const pct = (v) => (v === null || v === undefined ? "–" : `${Math.round(v * 100)}%`);
  $("#result-info").textContent =
    `seed ${g.seed} · ${g.duration_s} s · model ${g.model_id} · melody ${pct(a.melody_acc)} · ` +
    `dynamics r ${a.dynamics_r == null ? "–" : a.dynamics_r.toFixed(2)} · beat F1 ${pct(a.beat_f1)}` +
    (g.rerun_of ? ` · re-run of #${g.rerun_of}` : "");
}

function controlsLabel(req) {
  return ["melody", "dynamics", "rhythm"].filter((n) => req[n] && req[n].mode !== "none").map((n) => `${n}:${req[n].mode}`).join(" ") || "free";
}

async function loadHistory() {
  const { res, body } = await api("/api/history?limit=25");
  if (!res.ok) return;
  const rows = $("#history-rows");
  rows.replaceChildren();
  for (const g of body.items) {
    const tr = document.createElement("tr");
    tr.dataset.id = g.id;
    const when = new Date(g.created * 1000).toLocaleTimeString();
    for (const text of [when, g.prompt || "(no prompt)", controlsLabel(g.request), String(g.seed), g.status]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    const td = document.createElement("td");
    if (g.urls.audio) {
      const play = document.createElement("button");
      play.type = "button"; play.className = "small replay"; play.textContent = "play";
      play.onclick = () => { showResult(g); $("#result-audio").play().catch(() => {}); };
      td.append(play, " ");
    }
    const again = document.createElement("button");
    again.type = "button"; again.className = "small rerun"; again.textContent = "re-run";
    again.onclick = () => rerun(g.id);
    td.append(again);
    if (g.error) td.title = g.error;
    tr.append(td);
    rows.append(tr);
  }
}

async function rerun(id) {
  setStatus(`re-running #${id}…`);
  const { res, body } = await api(`/api/history/${id}/rerun`, { method: "POST" });
  if (res.status === 202) await followJob(body.id);
  else setStatus(errorText(body, `error ${res.status}`), res.status === 503 ? "busy" : "error");
}

// ---------------------------------------------------------------- start
async function init() {
  const { res, body } = await api("/api/options");
  if (res.ok) {
    state.options = body;
    $("#model-id").textContent = body.model_id;
    const d = body.defaults;
    $("#duration").value = d.duration;
    $("#duration").max = body.limits.max_duration_s;
    $("#steps").value = d.steps;
    $("#cfg").value = d.cfg;
    $("#control-cfg").value = typeof d.control_cfg === "object"
      ? Object.entries(d.control_cfg).map(([k, v]) => `${k}=${v}`).join(",") : d.control_cfg;
    $("#dynamics-guidance").value = d.dynamics_guidance ?? 0;
    $("#downbeat-cfg").value = d.downbeat_cfg ?? 0;
    for (const s of body.shapes) $("#dynamics-shape").append(new Option(s, s));
    for (const c of body.curves) $("#dynamics-curve").append(new Option(c, c));
  } else {
    setStatus(errorText(body, "cannot load the studio options"), "error");
  }
  ["#melody-mode", "#dynamics-mode", "#rhythm-mode"].forEach((s) => $(s).addEventListener("change", syncModes));
  $("#gen-form").addEventListener("submit", submitForm);
  $("#new-seed").addEventListener("click", () => { $("#seed").value = Math.floor(Math.random() * 2 ** 31); });
  $("#history-refresh").addEventListener("click", loadHistory);
  $("#dyn-clear").addEventListener("click", () => { state.points = []; drawCanvas(); });
  const c = $("#dyn-canvas");
  c.addEventListener("pointerdown", (ev) => { state.drawing = true; c.setPointerCapture(ev.pointerId); addPoint(canvasPoint(ev)); });
  c.addEventListener("pointermove", (ev) => { if (state.drawing) addPoint(canvasPoint(ev)); });
  c.addEventListener("pointerup", () => { state.drawing = false; });
  syncModes();
  loadHistory();
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", init);
