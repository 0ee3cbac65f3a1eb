// The live dashboard: polls /dashboard/data every second, computes rates from the
// counters' differences, and draws the charts on canvases. No library, nothing loaded
// from elsewhere; text is set with textContent only (topics and client ids are data).
"use strict";

const POLL_MS = 1000;
const POINTS = 120; // two minutes of history

const history = { t: [], connections: [], rateIn: [], rateOut: [] };
let last = null; // the previous sample: { at, data }
let lastTopics = new Map(); // topic -> count at the previous sample

const $ = (id) => document.getElementById(id);

function fmt(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + " M";
  if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + " k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function uptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d > 0 ? `${d} d ${h} h` : h > 0 ? `${h} h ${m} min` : `${m} min ${s % 60} s`;
}

function push(series, value) {
  series.push(value);
  if (series.length > POINTS) series.shift();
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }
  return tr;
}

function fill(tbody, rows, empty, columns) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = row([[empty, "empty"]]);
    tr.firstChild.colSpan = columns;
    tbody.appendChild(tr);
    return;
  }
  for (const r of rows) tbody.appendChild(row(r));
}

// Draws `lines` ([{ values, colour }]) sharing one y axis from 0, newest on the right.
function chart(canvas, lines) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(w * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const left = 48, right = 8, top = 8, bottom = 18;
  const pw = w - left - right, ph = h - top - bottom;
  let max = 1;
  for (const l of lines) for (const v of l.values) if (v > max) max = v;
  max = niceCeil(max);
  const style = getComputedStyle(document.documentElement);
  ctx.strokeStyle = style.getPropertyValue("--line");
  ctx.fillStyle = style.getPropertyValue("--dim");
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + ph - (ph * i) / 4;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(left + pw, y);
    ctx.stroke();
    ctx.fillText(fmt((max * i) / 4), 4, y + 4);
  }
  ctx.fillText(`${POINTS} s`, left, h - 4);
  ctx.fillText("now", left + pw - 20, h - 4);
  let drawn = 0;
  for (const l of lines) {
    const n = l.values.length;
    if (n === 0) continue;
    ctx.strokeStyle = style.getPropertyValue(l.colour);
    ctx.lineWidth = 2;
    ctx.beginPath();
    l.values.forEach((v, i) => {
      const x = left + pw - ((n - 1 - i) * pw) / (POINTS - 1);
      const y = top + ph - (ph * v) / max;
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
    drawn = Math.max(drawn, n);
  }
  canvas.dataset.points = String(drawn);
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function render(data, at) {
  const dt = last ? (at - last.at) / 1000 : 0;
  const rate = (now, before) => (dt > 0 ? Math.max(0, now - before) / dt : null);
  const rIn = last ? rate(data.messages.received, last.data.messages.received) : null;
  const rOut = last ? rate(data.messages.sent, last.data.messages.sent) : null;

  $("version").textContent = data.version;
  $("connections").textContent = fmt(data.connections);
  $("offline").textContent = fmt(data.sessions.offline);
  $("rate-in").textContent = fmt(rIn);
  $("rate-out").textContent = fmt(rOut);
  $("dropped").textContent = fmt(data.messages.dropped);
  $("queued").textContent = fmt(data.queued);
  $("subscriptions").textContent = fmt(data.subscriptions);
  $("retained").textContent = fmt(data.retained);
  $("uptime").textContent = uptime(data.uptime);
  $("slots").textContent = String(data.topic_slots);

  push(history.connections, data.connections);
  if (rIn !== null) {
    push(history.rateIn, rIn);
    push(history.rateOut, rOut);
  }
  chart($("chart-connections"), [{ values: history.connections, colour: "--conn" }]);
  chart($("chart-messages"), [
    { values: history.rateIn, colour: "--in" },
    { values: history.rateOut, colour: "--out" },
  ]);

  const topics = new Map();
  fill(
    $("topics"),
    data.topics.map((t) => {
      topics.set(t.topic, t.count);
      const before = lastTopics.get(t.topic);
      const r = before === undefined ? null : rate(t.count, before);
      const count = t.error > 0 ? `≤ ${fmt(t.count)}` : fmt(t.count);
      return [[t.topic], [count, "num"], [fmt(r), "num"]];
    }),
    "no messages yet",
    3,
  );
  lastTopics = topics;
  fill(
    $("deepest"),
    data.deepest.map((c) => [
      [c.client_id],
      [fmt(c.queued), "num"],
      [fmt(c.inflight), "num"],
      c.connected ? ["connected"] : ["offline", "offline"],
    ]),
    "every queue is empty",
    4,
  );
  last = { at, data };
}

async function poll() {
  const status = $("status");
  try {
    const response = await fetch("/dashboard/data", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const data = await response.json();
    render(data, performance.now());
    status.textContent = "live";
    status.className = "status";
  } catch (e) {
    status.textContent = `cannot reach the broker (${e.message}); retrying`;
    status.className = "status bad";
  }
  setTimeout(poll, POLL_MS);
}

poll();
