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
// `want` names what the page needs beside the update every page gets ("graph", "groups",
// "profile"), `params` more of the query (the profile's prefix). Messages received are
// counted in the body's data-updates (the browser tests read it).
function connectLive(onMessage, want, params) {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (want) url.searchParams.set("want", want);
  for (const [k, v] of Object.entries(params || {})) if (v) url.searchParams.set(k, v);
  const sock = new WebSocket(url);
  const conn = document.getElementById("conn");
  sock.onopen = () => { conn.textContent = "live"; };
  sock.onclose = () => {
    conn.textContent = "disconnected; retrying…";
    setTimeout(() => connectLive(onMessage, want, params), 2000);
  };
  sock.onmessage = ev => {
    onMessage(JSON.parse(ev.data));
    document.body.dataset.messages = String(Number(document.body.dataset.messages || 0) + 1);
  };
}

// SVG elements (attributes set as attributes, text as text).
const SVG_NS = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

// The task stream: records [worker, thread, start, stop, key, prefix, status, transfers],
// one lane per worker thread, drawn on `canvas` with a time axis (wall clock) below.
class TaskStream {
  constructor(canvas, keep, countEl) {
    this.canvas = canvas; this.keep = keep; this.countEl = countEl;
    this.records = []; this.lanes = new Map(); this.prefixes = new Map();
    this.total = 0; this.skipped = 0; this.skew = 0; this.windowS = 20;
  }

  add(records, skipped) {
    this.skipped += skipped || 0;
    for (const r of records) {
      this.records.push(r);
      const lane = r[0] + " " + r[1];
      if (!this.lanes.has(lane)) this.lanes.set(lane, this.lanes.size);
      this.prefixes.set(r[5], (this.prefixes.get(r[5]) || 0) + 1);
    }
    this.total += records.length;
    if (this.records.length > this.keep) this.records.splice(0, this.records.length - this.keep);
    const c = this.countEl;
    c.textContent = this.total + " tasks" + (this.skipped ? " (+" + this.skipped + " not drawn)" : "");
    c.dataset.count = String(this.total);
  }

  geometry() {
    const [w, h] = fitCanvas(this.canvas);
    const axis = 22;
    return {w, h, axis, t0: Date.now() / 1000 + this.skew - this.windowS,
            laneH: (h - axis) / Math.max(this.lanes.size, 1)};
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const g = this.geometry(), win = this.windowS;
    const x = t => (t - g.t0) / win * g.w;
    ctx.clearRect(0, 0, g.w, g.h);
    for (const r of this.records) {
      if (r[3] < g.t0) continue;
      const y = this.lanes.get(r[0] + " " + r[1]) * g.laneH;
      for (const [a, b] of r[7]) {
        ctx.fillStyle = "#d33";
        ctx.fillRect(x(a), y + 1, Math.max(x(b) - x(a), 1), Math.max(g.laneH - 2, 1));
      }
      ctx.fillStyle = r[6] === "OK" ? colour(r[5]) : cssVar("--err");
      ctx.fillRect(x(r[2]), y + 1, Math.max(x(r[3]) - x(r[2]), 1), Math.max(g.laneH - 2, 1));
    }
    const fg = cssVar("--fg");
    ctx.strokeStyle = fg; ctx.fillStyle = fg; ctx.font = "11px sans-serif";
    ctx.beginPath(); ctx.moveTo(0, g.h - g.axis + 0.5); ctx.lineTo(g.w, g.h - g.axis + 0.5); ctx.stroke();
    const step = [1, 2, 5, 10, 15, 30, 60, 120, 300].find(s => win / s <= 10) || 600;
    for (let t = Math.ceil(g.t0 / step) * step; t <= g.t0 + win; t += step) {
      const px = Math.round(x(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(px, g.h - g.axis); ctx.lineTo(px, g.h - g.axis + 5); ctx.stroke();
      ctx.fillText(fmtClock(t), Math.min(px + 2, g.w - 50), g.h - 6);
    }
  }

  // The record under the mouse, as a line of text ("" for none).
  describe(ev) {
    const rect = this.canvas.getBoundingClientRect();
    const g = this.geometry();
    const t = g.t0 + (ev.clientX - rect.left) / rect.width * this.windowS;
    const lane = Math.floor((ev.clientY - rect.top) / rect.height * g.h / g.laneH);
    const hit = this.records.find(r => this.lanes.get(r[0] + " " + r[1]) === lane && r[2] <= t && t <= r[3]);
    if (!hit) return "";
    return hit[4] + " — " + hit[5] + ", " + (hit[6] === "OK" ? "done" : "erred") + ", " +
      ((hit[3] - hit[2]) * 1000).toFixed(1) + " ms from " + fmtClock(hit[2]) + " on " + hit[0] + " (thread " + hit[1] + ")";
  }
}
