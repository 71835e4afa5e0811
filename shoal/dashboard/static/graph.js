// /graph: the tasks the scheduler holds, by depth (left to right), coloured by state,
// redrawn from pushed updates: new tasks appended, the tasks' states, a whole new graph
// only once many drawn tasks are forgotten. Wheel to zoom (around the pointer), drag to pan, double-click to reset.
"use strict";

const STATE_VARS = {memory: "--done", processing: "--proc", erred: "--err", waiting: "--wait", queued: "--wait",
                    "no-worker": "--memhigh", released: "--bar", forgotten: "--bar"};
let graph = null, states = null, laid = null, placed = [], updates = 0;
let view = {scale: 1, dx: 0, drag: null};

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
  return {pos, columns: Math.max(col, 1), h};
}

// A task's state: from the last states pushed (-1: forgotten since the graph was built),
// else as the graph was built.
function stateOf(i) {
  if (!states) return graph.nodes[i][2];
  return states[i] >= 0 ? graph.states[states[i]] : "forgotten";
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
  if (!laid || laid.h !== h) laid = layout(graph, h);
  view.dx = Math.min(0, Math.max(w - w * view.scale, view.dx));
  const {pos, columns} = laid;
  const colW = w * view.scale / columns;
  const r = Math.max(1.5, Math.min(6, Math.min(colW / 2.5, h / (graph.nodes.length / columns) / 3)));
  const xy = i => [view.dx + (pos[i][0] + 0.5) * colW, 8 + pos[i][1] * (h - 16)];
  const visible = x => x >= -r && x <= w + r;
  ctx.strokeStyle = cssVar("--line"); ctx.globalAlpha = graph.edges.length > 5000 ? 0.25 : 0.6;
  ctx.beginPath();
  for (const [a, b] of graph.edges) {
    const [x1, y1] = xy(a), [x2, y2] = xy(b);
    if (!visible(x1) && !visible(x2) && (x1 < 0) === (x2 < 0)) continue;
    ctx.moveTo(x1, y1); ctx.lineTo(x2, y2);
  }
  ctx.stroke();
  ctx.globalAlpha = 1;
  // one path per state: a few fills, whatever the number of tasks
  const paths = new Map();
  placed = [];
  for (let i = 0; i < graph.nodes.length; i++) {
    const [x, y] = xy(i);
    if (!visible(x)) continue;
    const s = stateOf(i);
    if (!paths.has(s)) paths.set(s, new Path2D());
    paths.get(s).rect(x - r, y - r, 2 * r, 2 * r);
    placed.push([x, y, i]);
  }
  for (const [s, p] of paths) { ctx.fillStyle = cssVar(STATE_VARS[s] || "--wait"); ctx.fill(p); }
}

function legend() {
  const counts = {};
  for (let i = 0; i < graph.nodes.length; i++) { const s = stateOf(i); counts[s] = (counts[s] || 0) + 1; }
  const box = document.getElementById("graph-legend");
  box.replaceChildren(...[...graph.states, "forgotten"].filter(s => counts[s]).map(s => {
    const item = el("span", "item");
    item.dataset.state = s;
    item.dataset.count = String(counts[s]);
    const sw = el("span", "swatch");
    sw.style.background = cssVar(STATE_VARS[s] || "--wait");
    item.appendChild(sw);
    item.appendChild(document.createTextNode(s + " (" + counts[s] + ")"));
    return item;
  }));
  const c = document.getElementById("graph-count");
  c.textContent = graph.nodes.length + " of " + graph.total + " tasks, " + graph.edges.length + " dependencies" +
    (view.scale > 1 ? ", zoomed " + view.scale.toFixed(1) + "×" : "");
  c.dataset.count = String(graph.nodes.length);
}

function show() {
  legend();
  draw();
  document.body.dataset.updates = String(++updates);
}

const canvas = document.getElementById("graph");
canvas.addEventListener("mousemove", ev => {
  const rect = ev.target.getBoundingClientRect();
  const mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
  if (view.drag !== null) { view.dx = view.drag[1] + mx - view.drag[0]; draw(); return; }
  let best = null, bestD = 100;
  for (const [x, y, i] of placed) {
    const d = (x - mx) ** 2 + (y - my) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  }
  const n = best === null ? null : graph.nodes[best];
  document.getElementById("hover").textContent = n ? n[0] + " — " + stateOf(best) + " (prefix " + n[1] + ", depth " + n[3] + ")" : "";
});
canvas.addEventListener("wheel", ev => {
  ev.preventDefault();
  const mx = ev.clientX - canvas.getBoundingClientRect().left;
  const scale = Math.min(200, Math.max(1, view.scale * (ev.deltaY < 0 ? 1.25 : 0.8)));
  view.dx = scale === 1 ? 0 : mx - (mx - view.dx) * scale / view.scale;
  view.scale = scale;
  if (graph) show();
}, {passive: false});
canvas.addEventListener("mousedown", ev => { view.drag = [ev.clientX - canvas.getBoundingClientRect().left, view.dx]; });
window.addEventListener("mouseup", () => { view.drag = null; });
canvas.addEventListener("dblclick", () => { view = {scale: 1, dx: 0, drag: null}; if (graph) show(); });

// Appended tasks keep the others' indexes; a change this page already has (it got the
// graph when it connected) is skipped by its version.
function append(add) {
  if (!graph || add.version !== graph.version + 1 || add.base !== graph.nodes.length) return;
  for (const n of add.nodes) graph.nodes.push(n);
  for (const e of add.edges) graph.edges.push(e);
  graph.total = add.total;
  graph.version = add.version;
  laid = null;
}

connectLive(msg => {
  if (msg.graph) { graph = msg.graph; states = null; laid = null; }
  if (msg.type === "graph-add") append(msg);
  const s = msg.graph_states || (msg.type === "graph-states" ? msg : null);
  if (s && graph && s.version === graph.version) states = s.states;
  if (msg.graph || s) show();
}, "graph");
window.addEventListener("resize", () => { laid = null; draw(); });
