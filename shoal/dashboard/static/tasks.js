// /tasks: the task stream (one lane per worker thread) with a time axis, a legend of
// prefixes, hover details and up to 15 minutes of history (`TaskStream` in common.js).
"use strict";

const ts = new TaskStream(document.getElementById("stream"), 50000, document.getElementById("stream-count"));
ts.windowS = 60;

function legend() {
  const item = (cls, colourOf, text) => {
    const span = el("span", "item");
    const sw = el("span", "swatch" + (cls ? " " + cls : ""));
    if (colourOf) sw.style.background = colourOf;
    span.appendChild(sw);
    span.appendChild(document.createTextNode(text));
    return span;
  };
  const items = [...ts.prefixes.entries()].sort((a, b) => b[1] - a[1]).map(([p, n]) => item(null, colour(p), p + " (" + n + ")"));
  document.getElementById("legend").replaceChildren(...items, item("err", null, "erred"), item("transfer", null, "transfer"));
}

ts.canvas.addEventListener("mousemove", ev => { document.getElementById("hover").textContent = ts.describe(ev); });
for (const b of document.querySelectorAll("button[data-window]")) {
  b.addEventListener("click", () => { ts.windowS = Number(b.dataset.window); ts.draw(); });
}

connectLive(msg => {
  ts.skew = msg.time - Date.now() / 1000;
  if (msg.stream) { ts.add(msg.stream, msg.skipped); legend(); }
  ts.draw();
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
});
setInterval(() => ts.draw(), 1000);
