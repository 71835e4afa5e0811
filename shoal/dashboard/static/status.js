// shoal's status page: one WebSocket, updates pushed by the scheduler, drawn here
// (helpers in common.js).
// Every string from the server (task keys, prefixes, worker names) goes into the page
// through textContent or canvas text, never as HTML.
"use strict";

const stream = new TaskStream(document.getElementById("stream"), 5000, document.getElementById("stream-count"));
let updates = 0;

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

connectLive(msg => {
  stream.skew = msg.time - Date.now() / 1000;
  if (msg.stream) stream.add(msg.stream, msg.skipped);
  if (msg.summary) {
    renderProgress(msg.summary);
    renderWorkers(msg.summary);
    updates++;
    document.body.dataset.updates = String(updates);
  }
  stream.draw();
});

stream.canvas.addEventListener("mousemove", ev => { document.getElementById("hover").textContent = stream.describe(ev); });
