// /system: the scheduler process's CPU, memory, network and open files over time.
"use strict";

const samples = [];  // [time, cpu, rss, fds, read_bps, write_bps]

function chart(id, series, fmt) {
  const canvas = document.getElementById(id);
  const ctx = canvas.getContext("2d");
  const [w, h] = fitCanvas(canvas);
  ctx.clearRect(0, 0, w, h);
  if (!samples.length) return;
  const t0 = samples[0][0], t1 = Math.max(samples[samples.length - 1][0], t0 + 1);
  let top = 1;
  for (const s of samples) for (const [i] of series) top = Math.max(top, s[i]);
  top *= 1.1;
  const pad = 16, x = t => (t - t0) / (t1 - t0) * (w - 2), y = v => h - pad - v / top * (h - 2 * pad);
  for (const [i, cls] of series) {
    ctx.strokeStyle = cssVar(cls); ctx.lineWidth = 1.5; ctx.beginPath();
    samples.forEach((s, k) => (k ? ctx.lineTo(x(s[0]), y(s[i])) : ctx.moveTo(x(s[0]), y(s[i]))));
    ctx.stroke();
  }
  const fg = cssVar("--fg");
  ctx.fillStyle = fg; ctx.font = "11px sans-serif";
  ctx.fillText(fmt(top / 1.1), 4, 12);
  ctx.fillText(fmtClock(t0), 4, h - 3);
  ctx.fillText(fmtClock(t1), w - 52, h - 3);
}

function drawAll() {
  chart("cpu", [[1, "--proc"]], v => v.toFixed(0) + "%");
  chart("memory", [[2, "--mem"]], fmtBytes);
  chart("network", [[4, "--done"], [5, "--proc"]], v => fmtBytes(v) + "/s");
  chart("fds", [[3, "--fg"]], v => String(Math.round(v)));
  const s = samples[samples.length - 1];
  if (s) {
    document.getElementById("latest").textContent = "Now: CPU " + s[1].toFixed(0) + "%, " + fmtBytes(s[2]) +
      ", " + s[3] + " open files, network in " + fmtBytes(s[4]) + "/s, out " + fmtBytes(s[5]) + "/s";
  }
  document.body.dataset.samples = String(samples.length);
}

connectLive(msg => {
  if (msg.system_history) { samples.length = 0; samples.push(...msg.system_history); }
  if (msg.system && (!samples.length || msg.system[0] > samples[samples.length - 1][0])) samples.push(msg.system);
  if (samples.length > 600) samples.splice(0, samples.length - 600);
  drawAll();
});
window.addEventListener("resize", drawAll);
