// /graph: the tasks the scheduler holds, by depth (left to right), coloured by state.
"use strict";

const STATE_VARS = {memory: "--done", processing: "--proc", erred: "--err", waiting: "--wait", queued: "--wait",
                    "no-worker": "--memhigh", released: "--bar"};
let graph = null, placed = [];

// Layers by depth, left to right; a layer with more tasks than fit in a column (4 px
// each) is split into side-by-side columns, so 10,000 tasks stay apart.
function layout(g, h) {
  const byDepth = new Map();
  g.nodes.forEach((n, i) => {
    if (!byDepth.has(n[3])) byDepth.set(n[3], []);
    byDepth.get(n[3]).push(i);
  });
  const depths = [...byDepth.keys()].sort((a, b) => a - b);
  const fit = Math.max(1, Math.floor((h - 16) / 4));
  const pos = new Array(g.nodes.length);
  let col = 0;
  for (const d of depths) {
    const ids = byDepth.get(d);
    const k = Math.ceil(ids.length / fit), rows = Math.ceil(ids.length / k);
    ids.forEach((i, j) => { pos[i] = [col + Math.floor(j / rows), ((j % rows) + 0.5) / rows]; });
    col += k;
  }
  return {pos, columns: Math.max(col, 1)};
}

function draw() {
  const canvas = document.getElementById("graph");
  const ctx = canvas.getContext("2d");
  const [w, h] = fitCanvas(canvas);
  ctx.clearRect(0, 0, w, h);
  if (!graph || !graph.nodes.length) {
    ctx.fillStyle = cssVar("--fg"); ctx.font = "14px sans-serif"; ctx.fillText("No tasks.", 10, 24);
    placed = [];
    return;
  }
  const {pos, columns} = layout(graph, h);
  const colW = w / columns;
  const r = Math.max(1.5, Math.min(6, h / (graph.nodes.length / columns) / 3));
  const xy = i => [(pos[i][0] + 0.5) * colW, 8 + pos[i][1] * (h - 16)];
  ctx.strokeStyle = cssVar("--line"); ctx.globalAlpha = graph.edges.length > 5000 ? 0.25 : 0.6;
  ctx.beginPath();
  for (const [a, b] of graph.edges) {
    const [x1, y1] = xy(a), [x2, y2] = xy(b);
    ctx.moveTo(x1, y1); ctx.lineTo(x2, y2);
  }
  ctx.stroke();
  ctx.globalAlpha = 1;
  placed = graph.nodes.map((n, i) => {
    const [x, y] = xy(i);
    ctx.fillStyle = cssVar(STATE_VARS[n[2]] || "--wait");
    ctx.fillRect(x - r, y - r, 2 * r, 2 * r);
    return [x, y, i];
  });
}

function legend(g) {
  const counts = {};
  for (const n of g.nodes) counts[n[2]] = (counts[n[2]] || 0) + 1;
  const box = document.getElementById("graph-legend");
  box.replaceChildren(...g.states.filter(s => counts[s]).map(s => {
    const item = el("span", "item");
    const sw = el("span", "swatch");
    sw.style.background = cssVar(STATE_VARS[s] || "--wait");
    item.appendChild(sw);
    item.appendChild(document.createTextNode(s + " (" + counts[s] + ")"));
    return item;
  }));
  const c = document.getElementById("graph-count");
  c.textContent = g.nodes.length + " of " + g.total + " tasks, " + g.edges.length + " dependencies";
  c.dataset.count = String(g.nodes.length);
}

document.getElementById("graph").addEventListener("mousemove", ev => {
  const rect = ev.target.getBoundingClientRect();
  const mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
  let best = null, bestD = 100;
  for (const [x, y, i] of placed) {
    const d = (x - mx) ** 2 + (y - my) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  }
  const n = best === null ? null : graph.nodes[best];
  document.getElementById("hover").textContent = n ? n[0] + " — " + n[2] + " (prefix " + n[1] + ", depth " + n[3] + ")" : "";
});

pollJSON("json/graph.json", 2, g => { graph = g; legend(g); draw(); });
window.addEventListener("resize", draw);
