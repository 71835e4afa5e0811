"""Server-rendered dashboard pages: the workers table and the `/info` pages.

Every value shown passes through `html.escape` (task keys, worker names, addresses and
exception texts are user-provided), and links put them through `urllib.parse.quote`.
Links are relative (`root` is the way back to the dashboard's root from the page), so
the pages also work behind a proxy that serves them under a sub-path. No scripts.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote

from dask.utils import format_bytes

from shoal.protocol.priority import priority_parts
from shoal.protocol.tracebacks import shorten

NAV = (("status", "Status"), ("tasks", "Tasks"), ("system", "System"), ("workers", "Workers"),
       ("profile", "Profile"), ("graph", "Graph"), ("groups", "Groups"), ("info/main/workers.html", "Info"),
       ("json/index.html", "JSON"), ("metrics", "Metrics"))  # fmt: skip


def root_of(path: str) -> str:
    """The relative way from `path` back to the root: `/a` -> `./`, `/a/b/c` -> `../../`."""
    depth = path.count("/") - 1
    return "../" * depth if depth > 0 else "./"


def page(title: str, body: str, root: str, scripts: tuple[str, ...] = (), main_class: str = "") -> str:
    """A dashboard page: the navigation, `title` as its heading (none for the status page,
    `main_class="status"`), `body`, and `scripts` from `statics/` (live pages: they show
    the WebSocket's state in the navigation bar)."""
    nav = " ".join(f'<a href="{root}{href}">{escape(label)}</a>' for href, label in NAV)
    if scripts:
        nav += ' <span id="conn" class="conn">connecting…</span>'
    heading = "" if main_class == "status" else f"<h1>{escape(title)}</h1>"
    tags = "".join(f'<script src="{root}statics/{escape(s)}"></script>' for s in scripts)
    cls = f' class="{escape(main_class)}"' if main_class else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} — shoal</title>"
        f'<link rel="icon" href="{root}statics/favicon.svg" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{root}statics/style.css"></head>'
        f"<body><nav><b>shoal</b> {nav}</nav><main{cls}>{heading}{body}</main>{tags}</body></html>"
    )


def _bytes(n: Any) -> str:
    return format_bytes(int(n)) if n else "0 B"


def worker_link(address: str, root: str, text: str | None = None) -> str:
    return f'<a href="{root}info/worker/{quote(address, safe="")}.html">{escape(text or address)}</a>'


def task_link(key: str, root: str) -> str:
    return f'<a href="{root}info/task/{quote(key, safe="")}.html">{escape(key)}</a>'


def memory_bar(w: dict, width: int = 160) -> str:
    """An SVG bar of a worker's process memory: managed, unmanaged, spilled, out of its
    limit (or of what it uses, without one)."""
    scale = max(w["memory_limit"] or 0, w["managed"] + w["unmanaged"] + w["spilled"], 1)
    x, rects = 0.0, []
    for cls, n in (("mem", w["managed"]), ("unmanaged", w["unmanaged"]), ("spilled", w["spilled"])):
        dx = width * n / scale
        if dx >= 0.5:
            rects.append(f'<rect class="{cls}" x="{x:.1f}" y="0" width="{dx:.1f}" height="12"/>')
        x += dx
    title = f"managed {_bytes(w['managed'])}, unmanaged {_bytes(w['unmanaged'])}, spilled {_bytes(w['spilled'])}"
    return (
        f'<svg class="membar" width="{width}" height="12" role="img"><title>{escape(title)}</title>'
        f'<rect class="track" x="0" y="0" width="{width}" height="12"/>{"".join(rects)}</svg>'
    )


def _rate(n: float) -> str:
    return f"{_bytes(n)}/s"


#: the workers table's columns (`workers.js` draws the same)
WORKER_COLUMNS = ("Address", "Name", "Status", "Threads", "Processing (executing)", "Keys held", "CPU",
                  "Process memory / limit", "Managed · unmanaged · spilled", "Net in (host)", "Net out (host)",
                  "Open files")  # fmt: skip


def workers_table(workers: list[dict], root: str) -> str:
    """One row per worker, narrow enough for a 1000 px window: the memory bar carries the
    managed, unmanaged and spilled figures below it."""
    rows = []
    for w in workers:
        limit = w["memory_limit"]
        mem = _bytes(w["memory"]) + (f" / {_bytes(limit)}" if limit else "")
        status = "paused" if w.get("paused") else "running"
        split = f"{_bytes(w['managed'])} · {_bytes(w['unmanaged'])} · {_bytes(w['spilled'])}"
        rows.append(
            f"<tr><td>{worker_link(w['address'], root)}</td><td>{escape(str(w['name']))}</td><td>{status}</td>"
            f"<td>{w['nthreads']}</td><td>{w['processing']} ({w['executing']})</td>"
            f"<td>{w['in_memory']}</td><td>{w.get('cpu', 0):.0f}%</td><td>{escape(mem)}</td>"
            f'<td>{memory_bar(w, 150)}<br><span class="split">{escape(split)}</span></td>'
            f"<td>{escape(_rate(w.get('read_bps', 0)))}</td>"
            f"<td>{escape(_rate(w.get('write_bps', 0)))}</td><td>{w.get('num_fds', 0)}</td></tr>"
        )
    head = "<tr>" + "".join(f"<th>{escape(c)}</th>" for c in WORKER_COLUMNS) + "</tr>"
    if not rows:
        return "<p>No workers.</p>"
    legend = (
        '<p class="legend"><span class="swatch mem"></span>managed <span class="swatch unmanaged"></span>unmanaged '
        '<span class="swatch spilled"></span>spilled (on disk)</p>'
    )
    return f'{legend}<div class="scroll"><table class="workers">{head}{"".join(rows)}</table></div>'


def traceback_text(frames: Any, shorten_patterns: Any = ()) -> str:
    """A task's traceback frames as Python prints them (file, line, function), without
    those matching `shorten_patterns` (`shoal.admin.traceback.shorten`)."""
    out = ["Traceback (most recent call last):"]
    frames = [f for f in frames or () if isinstance(f, (list, tuple)) and len(f) >= 3]
    for filename, lineno, name, *_ in shorten(frames, shorten_patterns):
        out.append(f'  File "{filename}", line {lineno}, in {name}')
    return "\n".join(out)


def worker_info(ws: Any, root: str, limit: int = 200) -> str:
    """A worker's details and the tasks it processes and holds (the first `limit` of each)."""
    pairs = [
        ("Address", ws.address), ("Name", ws.name), ("Host", ws.host), ("Threads", ws.nthreads),
        ("Memory limit", _bytes(ws.memory_limit)), ("Managed memory", _bytes(ws.nbytes)),
        ("Process id", ws.pid), ("Nanny", ws.nanny or "none"), ("Local directory", ws.local_directory),
        ("Resources", ws.resources or "none"),
    ]  # fmt: skip
    body = "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in pairs)
    body += "</table>"
    for title, tasks in (("Processing", list(ws.processing)), ("In memory", list(ws.has_what))):
        items = "".join(f"<li>{task_link(_key(ts.key), root)}</li>" for ts in tasks[:limit])
        more = f"<p>… and {len(tasks) - limit} more</p>" if len(tasks) > limit else ""
        body += f"<h2>{escape(title)} ({len(tasks)})</h2><ul>{items}</ul>{more}"
    return body


def task_info(ts: Any, root: str, limit: int = 100, shorten_patterns: Any = ()) -> str:
    pairs: list[tuple[str, str]] = [
        ("Key", escape(_key(ts.key))), ("State", escape(ts.state)), ("Prefix", escape(ts.prefix)),
        ("Priority", escape(str(priority_parts(ts.priority)))),
    ]  # fmt: skip
    if ts.state == "memory":
        pairs.append(("Bytes", escape(_bytes(ts.nbytes))))
        pairs.append(("Type", escape(str(ts.type_name))))
    if ts.processing_on is not None:
        pairs.append(("Processing on", worker_link(ts.processing_on.address, root)))
    if ts.who_has:
        pairs.append(("Held by", ", ".join(worker_link(w.address, root) for w in ts.who_has)))
    if ts.exception_text:
        pairs.append(("Exception", f"<pre>{escape(ts.exception_text)}</pre>"))
    if getattr(ts, "traceback", None):
        pairs.append(("Traceback", f'<pre class="traceback">{escape(traceback_text(ts.traceback, shorten_patterns))}</pre>'))
    if ts.who_wants:
        pairs.append(("Wanted by", escape(", ".join(sorted(c.id for c in ts.who_wants)))))
    body = "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in pairs) + "</table>"
    for title, tasks in (("Dependencies", list(ts.dependencies)), ("Dependents", list(ts.dependents))):
        items = "".join(f"<li>{task_link(_key(d.key), root)} ({escape(d.state)})</li>" for d in tasks[:limit])
        more = f"<p>… and {len(tasks) - limit} more</p>" if len(tasks) > limit else ""
        body += f"<h2>{escape(title)} ({len(tasks)})</h2><ul>{items}</ul>{more}"
    return body


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(key)
