// Helpers shared by shoal's dashboard pages (not /status, which has its own). Every string
// from the server goes into the page through textContent, SVG text or canvas text.
"use strict";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function colour(prefix) {
  let h = 0;
  for (let i = 0; i < prefix.length; i++) h = (h * 31 + prefix.charCodeAt(i)) >>> 0;
  return "hsl(" + (h % 360) + ", 60%, 55%)";
}

function fmtBytes(n) {
  const units = ["B", "kiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : Math.round(n)) + " " + units[i];
}

function fmtClock(t) {
  const d = new Date(t * 1000);
  return d.toTimeString().slice(0, 8);
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
}

// The canvas drawn at the resolution it is shown at (sharp, and as wide as the page).
function fitCanvas(canvas) {
  const w = Math.max(200, Math.round(canvas.clientWidth || canvas.width));
  const h = Math.round(canvas.clientHeight || canvas.height);
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  return [w, h];
}

// One WebSocket to the scheduler, reconnecting; `onMessage(msg)` gets every push.
function connectLive(onMessage) {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const sock = new WebSocket(url);
  const conn = document.getElementById("conn");
  sock.onopen = () => { conn.textContent = "live"; };
  sock.onclose = () => { conn.textContent = "disconnected; retrying…"; setTimeout(() => connectLive(onMessage), 2000); };
  sock.onmessage = ev => onMessage(JSON.parse(ev.data));
}

// Poll a JSON endpoint every `seconds` while the page is visible.
function pollJSON(path, seconds, onData) {
  const conn = document.getElementById("conn");
  async function once() {
    if (!document.hidden) {
      try {
        const r = await fetch(path, {cache: "no-store"});
        const data = await r.json();
        conn.textContent = r.ok ? "live" : "error " + r.status;
        onData(data, r.ok);
      } catch (e) {
        conn.textContent = "disconnected; retrying…";
      }
    }
    if (seconds) setTimeout(once, seconds * 1000);
  }
  once();
  return once;
}
