// /profile: the workers' profiler as an icicle graph, per task prefix; click to zoom.
// The scheduler pushes a newer profile every few seconds while the page is open.
"use strict";

const ROW = 18;
let data = null, focus = null, prefix = new URLSearchParams(location.search).get("prefix");

const svg = svgEl;

function hue(s) {
  let h = 0;
  for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) >>> 0;
  return "hsl(" + (h % 360) + ", 55%, 72%)";
}

function draw() {
  const box = document.getElementById("icicle");
  const width = Math.max(600, box.parentElement.clientWidth - 4);
  box.replaceChildren();
  if (!data || !data.tree || !data.tree.count) {
    box.setAttribute("height", 30);
    box.appendChild(svg("text", {x: 4, y: 18, class: "label"}, "No samples yet: run some tasks (the profile is redrawn every few seconds)."));
    return;
  }
  const root = focus || data.tree;
  let maxDepth = 0;
  const stack = [[root, 0, 0]];
  const scale = width / root.count;
  while (stack.length) {
    const [node, depth, x0] = stack.pop();
    maxDepth = Math.max(maxDepth, depth);
    const w = node.count * scale;
    const g = svg("g", {class: "frame"});
    const name = depth === 0 ? (focus ? "⬑ " + node.name : "all") : node.name;
    g.appendChild(svg("title", {}, name + "  " + node.filename + ":" + node.line_number + "\n" + node.count + " samples"));
    g.appendChild(svg("rect", {x: x0 * scale, y: depth * ROW, width: Math.max(w - 0.5, 0.5), height: ROW - 1,
                               fill: depth === 0 ? "#ccc" : hue(node.filename)}));
    if (w > 30) g.appendChild(svg("text", {x: x0 * scale + 3, y: depth * ROW + 13, class: "label"}, name.slice(0, Math.floor(w / 7))));
    g.addEventListener("click", () => { focus = depth === 0 ? null : node; draw(); });
    g.addEventListener("mouseenter", () => {
      document.getElementById("hover").textContent = name + " — " + node.filename + ":" + node.line_number + ", " +
        node.count + " samples (" + (100 * node.count / data.tree.count).toFixed(1) + "%)";
    });
    box.appendChild(g);
    let off = x0;
    for (const c of node.children) {
      if (c.count * scale >= 0.5) stack.push([c, depth + 1, off]);
      off += c.count;
    }
  }
  box.setAttribute("width", width);
  box.setAttribute("height", (maxDepth + 1) * ROW + 2);
}

function links(d) {
  const p = document.getElementById("prefixes");
  const all = el("a", prefix ? null : "current", "all tasks");
  all.href = "profile";
  const items = [all];
  for (const name of d.prefixes || []) {
    const a = el("a", name === prefix ? "current" : null, name);
    a.href = "profile?prefix=" + encodeURIComponent(name);
    items.push(a);
  }
  p.replaceChildren(...items);
}

// The frame at the same place (by names from the root) in a newer tree, so a zoom stays.
function pathOf(node, root) {
  const path = [], stack = [[root, []]];
  while (stack.length) {
    const [n, p] = stack.pop();
    if (n === node) return p;
    for (const c of n.children) stack.push([c, [...p, c.name + " " + c.filename + ":" + c.line_number]]);
  }
  return path;
}

function follow(root, path) {
  let n = root;
  for (const step of path) {
    n = n.children.find(c => c.name + " " + c.filename + ":" + c.line_number === step);
    if (!n) return null;
  }
  return n;
}

let updates = 0;
connectLive(msg => {
  const d = msg.profile || (msg.type === "profile" ? msg : null);
  if (!d || (d.prefix || null) !== prefix) return;
  const path = focus && data ? pathOf(focus, data.tree) : null;
  data = d;
  focus = path && path.length ? follow(d.tree, path) : null;
  links(d);
  const c = document.getElementById("profile-count");
  const n = d.tree ? d.tree.count : 0;
  c.textContent = n + " samples" + (prefix ? " of " + prefix : "");
  c.dataset.count = String(n);
  draw();
  document.body.dataset.updates = String(++updates);
}, "profile", {prefix: prefix});
window.addEventListener("resize", draw);
draw();
