// /workers: the workers table redrawn from every pushed update (the server renders the
// first one, so the page reads without scripts too). Columns as pages.workers_table.
"use strict";

const HEAD = ["Address", "Name", "Status", "Threads", "Processing (executing)", "Keys held", "CPU",
              "Process memory / limit", "Managed · unmanaged · spilled", "Net in (host)", "Net out (host)", "Open files"];
let updates = 0;

function memoryBar(w, width) {
  const scale = Math.max(w.memory_limit || 0, w.managed + w.unmanaged + w.spilled, 1);
  const bar = svgEl("svg", {class: "membar", width: width, height: 12, role: "img"});
  bar.appendChild(svgEl("title", {}, "managed " + fmtBytes(w.managed) + ", unmanaged " + fmtBytes(w.unmanaged) +
                                     ", spilled " + fmtBytes(w.spilled)));
  bar.appendChild(svgEl("rect", {class: "track", x: 0, y: 0, width: width, height: 12}));
  let x = 0;
  for (const [cls, n] of [["mem", w.managed], ["unmanaged", w.unmanaged], ["spilled", w.spilled]]) {
    const dx = width * n / scale;
    if (dx >= 0.5) bar.appendChild(svgEl("rect", {class: cls, x: x.toFixed(1), y: 0, width: dx.toFixed(1), height: 12}));
    x += dx;
  }
  return bar;
}

function render(workers) {
  const box = document.getElementById("workers-live");
  if (!workers.length) { box.replaceChildren(el("p", null, "No workers.")); return; }
  const table = el("table", "workers");
  const head = el("tr");
  for (const h of HEAD) head.appendChild(el("th", null, h));
  table.appendChild(head);
  for (const w of workers) {
    const tr = el("tr");
    tr.dataset.worker = w.address;
    const a = el("a", null, w.address);
    a.href = "info/worker/" + encodeURIComponent(w.address) + ".html";
    const first = el("td");
    first.appendChild(a);
    tr.appendChild(first);
    const mem = fmtBytes(w.memory) + (w.memory_limit ? " / " + fmtBytes(w.memory_limit) : "");
    const cells = [w.name, w.paused ? "paused" : "running", w.nthreads, w.processing + " (" + w.executing + ")",
                   w.in_memory, (w.cpu || 0).toFixed(0) + "%", mem];
    for (const v of cells) tr.appendChild(el("td", null, v));
    const bar = el("td");
    bar.appendChild(memoryBar(w, 150));
    bar.appendChild(el("br"));
    bar.appendChild(el("span", "split", fmtBytes(w.managed) + " · " + fmtBytes(w.unmanaged) + " · " + fmtBytes(w.spilled)));
    tr.appendChild(bar);
    for (const v of [fmtBytes(w.read_bps || 0) + "/s", fmtBytes(w.write_bps || 0) + "/s", w.num_fds || 0]) {
      tr.appendChild(el("td", null, v));
    }
    table.appendChild(tr);
  }
  const legend = el("p", "legend");
  for (const [cls, text] of [["mem", "managed"], ["unmanaged", "unmanaged"], ["spilled", "spilled (on disk)"]]) {
    legend.appendChild(el("span", "swatch " + cls));
    legend.appendChild(document.createTextNode(text + " "));
  }
  const scroll = el("div", "scroll");
  scroll.appendChild(table);
  box.replaceChildren(legend, scroll);
}

connectLive(msg => {
  if (!msg.summary) return;
  render(msg.summary.workers);
  document.body.dataset.updates = String(++updates);
});
