// shoal's status page: one WebSocket, updates pushed by the scheduler, drawn here
// (helpers in common.js).
// Every string from the server (task keys, prefixes, worker names) goes into the page
// through textContent or canvas text, never as HTML.
"use strict";

const STREAM_WINDOW = 20;      // seconds of task stream shown
const STREAM_KEEP = 5000;      // records kept in the browser
const stream = [];             // [worker, thread, start, stop, key, prefix, status, transfers]
const lanes = new Map();       // "worker thread" -> lane index
let serverTime = 0;            // the scheduler's clock at the last update
let clockSkew = 0;             // serverTime - local time
let updates = 0;
let streamTotal = 0;
let streamSkipped = 0;         // records the scheduler did not send (more than it draws)

function bar(parts, total) {
  const b = el("div", "bar");
  for (const [cls, n] of parts) {
    if (!n || !total) continue;
    const s = el("span", cls);
    s.style.width = (100 * Math.min(n, total) / total) + "%";
    b.appendChild(s);
  }
  return b;
}

function addStream(records, skipped) {
  streamSkipped += skipped || 0;
  for (const r of records) {
    stream.push(r);
    const lane = r[0] + " " + r[1];
    if (!lanes.has(lane)) lanes.set(lane, lanes.size);
  }
  streamTotal += records.length;
  if (stream.length > STREAM_KEEP) stream.splice(0, stream.length - STREAM_KEEP);
  const c = document.getElementById("stream-count");
  c.textContent = streamTotal + " tasks" + (streamSkipped ? " (+" + streamSkipped + " not drawn)" : "");
  c.dataset.count = String(streamTotal);
}

function drawStream() {
  const canvas = document.getElementById("stream");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const now = Date.now() / 1000 + clockSkew;
  const t0 = now - STREAM_WINDOW;
  const n = Math.max(lanes.size, 1);
  const laneH = h / n;
  const x = t => (t - t0) / STREAM_WINDOW * w;
  for (const r of stream) {
    if (r[3] < t0) continue;
    const y = lanes.get(r[0] + " " + r[1]) * laneH;
    for (const [a, b] of r[7]) {
      ctx.fillStyle = "#d33";
      ctx.fillRect(x(a), y + 1, Math.max(x(b) - x(a), 1), laneH - 2);
    }
    ctx.fillStyle = r[6] === "OK" ? colour(r[5]) : "#000";
    ctx.fillRect(x(r[2]), y + 1, Math.max(x(r[3]) - x(r[2]), 1), laneH - 2);
  }
}

function renderProgress(summary) {
  const states = summary.states;
  const idx = name => states.indexOf(name);
  const body = document.querySelector("#progress tbody");
  const rows = [];
  for (const [prefix, counts] of Object.entries(summary.prefixes)) {
    const done = counts[idx("memory")], proc = counts[idx("processing")], err = counts[idx("erred")];
    const wait = counts[idx("waiting")] + counts[idx("queued")] + counts[idx("no-worker")];
    const total = done + proc + err + wait + counts[idx("released")];
    const tr = el("tr");
    tr.dataset.prefix = prefix;
    const name = el("td", null, prefix);
    name.style.color = colour(prefix);
    tr.appendChild(name);
    const cell = el("td");
    cell.appendChild(bar([["done", done], ["proc", proc], ["err", err], ["wait", wait]], total));
    tr.appendChild(cell);
    for (const v of [done, proc, wait, err]) tr.appendChild(el("td", null, v));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  const t = summary.totals;
  document.getElementById("totals").textContent =
    summary.n_tasks + " tasks: " + t.memory + " in memory, " + t.processing + " processing, " + t.erred + " erred";
}

function renderWorkers(summary) {
  const body = document.querySelector("#workers tbody");
  const maxProc = Math.max(1, ...summary.workers.map(w => Math.max(w.processing, w.nthreads)));
  const rows = summary.workers.map(w => {
    const tr = el("tr");
    const name = el("td");
    const a = el("a", null, w.name === w.address ? w.address : w.name + " (" + w.address + ")");
    a.href = "info/worker/" + encodeURIComponent(w.address) + ".html";
    name.appendChild(a);
    tr.appendChild(name);
    tr.appendChild(el("td", null, w.processing));
    const pc = el("td");
    pc.appendChild(bar([["proc", w.processing]], maxProc));
    tr.appendChild(pc);
    if (w.paused) name.appendChild(el("span", "paused", " paused"));
    // process memory = managed (results in memory) + unmanaged; spilled results are on disk
    let text = fmtBytes(w.memory) + (w.memory_limit ? " / " + fmtBytes(w.memory_limit) : "");
    if (w.spilled) text += " (+" + fmtBytes(w.spilled) + " spilled)";
    const cell = el("td", null, text);
    cell.title = "managed " + fmtBytes(w.managed) + ", unmanaged " + fmtBytes(w.unmanaged) + ", spilled " + fmtBytes(w.spilled);
    tr.appendChild(cell);
    const mc = el("td");
    const high = w.memory_limit && w.memory > 0.7 * w.memory_limit;
    const scale = Math.max(w.memory_limit || 0, w.managed + w.unmanaged + w.spilled, 1);
    mc.appendChild(bar([[high ? "memhigh" : "mem", w.managed], ["unmanaged", w.unmanaged], ["spilled", w.spilled]], scale));
    tr.appendChild(mc);
    return tr;
  });
  body.replaceChildren(...rows);
}

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const sock = new WebSocket(url);
  const conn = document.getElementById("conn");
  sock.onopen = () => { conn.textContent = "live"; };
  sock.onclose = () => { conn.textContent = "disconnected; retrying…"; setTimeout(connect, 2000); };
  sock.onmessage = ev => {
    const msg = JSON.parse(ev.data);
    serverTime = msg.time;
    clockSkew = serverTime - Date.now() / 1000;
    if (msg.stream) addStream(msg.stream, msg.skipped);
    if (msg.summary) {
      renderProgress(msg.summary);
      renderWorkers(msg.summary);
      updates++;
      document.body.dataset.updates = String(updates);
    }
    drawStream();
  };
}

document.getElementById("stream").addEventListener("mousemove", ev => {
  const canvas = ev.target;
  const rect = canvas.getBoundingClientRect();
  const t = (Date.now() / 1000 + clockSkew) - STREAM_WINDOW + (ev.clientX - rect.left) / rect.width * STREAM_WINDOW;
  const lane = Math.floor((ev.clientY - rect.top) / rect.height * Math.max(lanes.size, 1));
  const hit = stream.find(r => lanes.get(r[0] + " " + r[1]) === lane && r[2] <= t && t <= r[3]);
  document.getElementById("hover").textContent =
    hit ? hit[4] + " on " + hit[0] + ": " + ((hit[3] - hit[2]) * 1000).toFixed(1) + " ms" : "";
});

connect();
