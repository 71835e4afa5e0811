// /tasks: the task stream (one lane per worker thread) with a time axis, a legend of
// prefixes, hover details and up to 15 minutes of history.
"use strict";

const KEEP = 50000;            // records kept in the browser
const stream = [];             // [worker, thread, start, stop, key, prefix, status, transfers]
const lanes = new Map();
const prefixes = new Map();    // prefix -> tasks seen
let windowS = 60, skew = 0, total = 0, skipped = 0;
const AXIS = 22;               // pixels under the lanes for the time axis

function add(records, skip) {
  skipped += skip || 0;
  for (const r of records) {
    stream.push(r);
    const lane = r[0] + " " + r[1];
    if (!lanes.has(lane)) lanes.set(lane, lanes.size);
    prefixes.set(r[5], (prefixes.get(r[5]) || 0) + 1);
  }
  total += records.length;
  if (stream.length > KEEP) stream.splice(0, stream.length - KEEP);
  const c = document.getElementById("stream-count");
  c.textContent = total + " tasks" + (skipped ? " (+" + skipped + " not drawn)" : "");
  c.dataset.count = String(total);
}

function legend() {
  const box = document.getElementById("legend");
  const items = [...prefixes.entries()].sort((a, b) => b[1] - a[1]).map(([p, n]) => {
    const item = el("span", "item");
    const sw = el("span", "swatch");
    sw.style.background = colour(p);
    item.appendChild(sw);
    item.appendChild(document.createTextNode(p + " (" + n + ")"));
    return item;
  });
  const err = el("span", "item");
  const sw = el("span", "swatch err"); err.appendChild(sw); err.appendChild(document.createTextNode("erred"));
  const tr = el("span", "item");
  const sw2 = el("span", "swatch transfer"); tr.appendChild(sw2); tr.appendChild(document.createTextNode("transfer"));
  box.replaceChildren(...items, err, tr);
}

function geometry(canvas) {
  const [w, h] = fitCanvas(canvas);
  const now = Date.now() / 1000 + skew;
  return {w, h, t0: now - windowS, laneH: (h - AXIS) / Math.max(lanes.size, 1)};
}

function draw() {
  const canvas = document.getElementById("stream");
  const ctx = canvas.getContext("2d");
  const g = geometry(canvas);
  const x = t => (t - g.t0) / windowS * g.w;
  ctx.clearRect(0, 0, g.w, g.h);
  for (const r of stream) {
    if (r[3] < g.t0) continue;
    const y = lanes.get(r[0] + " " + r[1]) * g.laneH;
    for (const [a, b] of r[7]) {
      ctx.fillStyle = "#d33";
      ctx.fillRect(x(a), y + 1, Math.max(x(b) - x(a), 1), g.laneH - 2);
    }
    ctx.fillStyle = r[6] === "OK" ? colour(r[5]) : "#000";
    ctx.fillRect(x(r[2]), y + 1, Math.max(x(r[3]) - x(r[2]), 1), Math.max(g.laneH - 2, 1));
  }
  // the time axis: a tick every "nice" step, labelled with the wall clock
  const fg = cssVar("--fg");
  ctx.strokeStyle = fg; ctx.fillStyle = fg; ctx.font = "11px sans-serif";
  ctx.beginPath(); ctx.moveTo(0, g.h - AXIS + 0.5); ctx.lineTo(g.w, g.h - AXIS + 0.5); ctx.stroke();
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300].find(s => windowS / s <= 10) || 600;
  for (let t = Math.ceil(g.t0 / step) * step; t <= g.t0 + windowS; t += step) {
    const px = Math.round(x(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(px, g.h - AXIS); ctx.lineTo(px, g.h - AXIS + 5); ctx.stroke();
    ctx.fillText(fmtClock(t), Math.min(px + 2, g.w - 50), g.h - 6);
  }
}

document.getElementById("stream").addEventListener("mousemove", ev => {
  const canvas = ev.target;
  const rect = canvas.getBoundingClientRect();
  const g = geometry(canvas);
  const t = g.t0 + (ev.clientX - rect.left) / rect.width * windowS;
  const lane = Math.floor((ev.clientY - rect.top) / rect.height * g.h / g.laneH);
  const hit = stream.find(r => lanes.get(r[0] + " " + r[1]) === lane && r[2] <= t && t <= r[3]);
  document.getElementById("hover").textContent = hit
    ? hit[4] + " — " + hit[5] + ", " + (hit[6] === "OK" ? "done" : "erred") + ", " +
      ((hit[3] - hit[2]) * 1000).toFixed(1) + " ms from " + fmtClock(hit[2]) + " on " + hit[0] + " (thread " + hit[1] + ")"
    : "";
});

for (const b of document.querySelectorAll("button[data-window]")) {
  b.addEventListener("click", () => { windowS = Number(b.dataset.window); draw(); });
}

connectLive(msg => {
  skew = msg.time - Date.now() / 1000;
  if (msg.stream) { add(msg.stream, msg.skipped); legend(); }
  draw();
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
});
setInterval(draw, 1000);
