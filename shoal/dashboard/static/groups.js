// /groups: task groups as boxes in layers (a group's dependencies to its left), arrows
// from its dependencies, a bar of its states; then a table. Redrawn from pushed updates.
"use strict";

const BOX_W = 190, BOX_H = 46, GAP_X = 70, GAP_Y = 14;
let updates = 0;

function drawing(groups) {
  const layers = new Map();
  for (const g of groups) {
    if (!layers.has(g.depth)) layers.set(g.depth, []);
    layers.get(g.depth).push(g);
  }
  const pos = new Map();
  for (const [depth, gs] of layers) gs.forEach((g, i) => pos.set(g.name, [10 + depth * (BOX_W + GAP_X), 10 + i * (BOX_H + GAP_Y)]));
  const width = 20 + (Math.max(...layers.keys()) + 1) * (BOX_W + GAP_X);
  const height = 20 + Math.max(...[...layers.values()].map(gs => gs.length)) * (BOX_H + GAP_Y);
  const svg = svgEl("svg", {class: "groups", width: width, height: height});
  const marker = svgEl("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto"});
  marker.appendChild(svgEl("path", {d: "M0,0 L10,5 L0,10 z", class: "arrowhead"}));
  const defs = svgEl("defs");
  defs.appendChild(marker);
  svg.appendChild(defs);
  for (const g of groups) {
    const [x2, y2] = pos.get(g.name);
    for (const dep of g.depends_on) {
      const [x1, y1] = pos.get(dep);
      svg.appendChild(svgEl("line", {class: "edge", x1: x1 + BOX_W, y1: y1 + BOX_H / 2, x2: x2, y2: y2 + BOX_H / 2,
                                     "marker-end": "url(#arrow)"}));
    }
  }
  for (const g of groups) {
    const [x, y] = pos.get(g.name), c = g.counts;
    const total = Math.max(Object.values(c).reduce((a, b) => a + b, 0), 1);
    const box = svgEl("g");
    box.dataset.group = g.name;
    const said = Object.entries(c).filter(([, n]) => n).map(([s, n]) => n + " " + s).join(", ");
    box.appendChild(svgEl("title", {}, g.name + ": " + said + "; " + fmtBytes(g.nbytes) + " in memory"));
    box.appendChild(svgEl("rect", {class: "group", x: x, y: y, width: BOX_W, height: BOX_H, rx: 4}));
    box.appendChild(svgEl("text", {x: x + 6, y: y + 16}, g.name.slice(0, 26)));
    let bx = x + 6;
    for (const [cls, n] of [["done", c.memory], ["proc", c.processing], ["err", c.erred],
                            ["wait", c.waiting + c.queued + c["no-worker"]]]) {
      const dx = (BOX_W - 12) * n / total;
      if (dx > 0) box.appendChild(svgEl("rect", {class: cls, x: bx.toFixed(1), y: y + 24, width: dx.toFixed(1), height: 8}));
      bx += dx;
    }
    box.appendChild(svgEl("text", {class: "small", x: x + 6, y: y + 43}, c.memory + "/" + total + " done"));
    svg.appendChild(box);
  }
  return svg;
}

function table(groups) {
  const t = el("table");
  const states = Object.keys(groups[0].counts);
  const head = el("tr");
  for (const h of ["group", ...states, "bytes", "depends on"]) head.appendChild(el("th", null, h));
  t.appendChild(head);
  for (const g of groups) {
    const tr = el("tr");
    for (const v of [g.name, ...states.map(s => g.counts[s]), fmtBytes(g.nbytes), g.depends_on.join(", ") || "—"]) {
      tr.appendChild(el("td", null, v));
    }
    t.appendChild(tr);
  }
  return t;
}

function render(groups) {
  const box = document.getElementById("groups-live");
  const count = document.getElementById("groups-count");
  const tasks = groups.reduce((a, g) => a + Object.values(g.counts).reduce((x, y) => x + y, 0), 0);
  count.textContent = groups.length + " groups, " + tasks + " tasks";
  count.dataset.count = String(groups.length);
  if (!groups.length) { box.replaceChildren(el("p", null, "No tasks.")); return; }
  const a = el("div", "scroll"), b = el("div", "scroll");
  a.appendChild(drawing(groups));
  b.appendChild(table(groups));
  box.replaceChildren(a, b);
}

connectLive(msg => {
  if (!msg.groups) return;
  render(msg.groups);
  document.body.dataset.updates = String(++updates);
}, "groups");
