"""Progress bars for futures and collections: `progress` (``distributed.diagnostics.progressbar``).

A bar asks the scheduler to watch the keys (`progress_start`): the scheduler walks the
graph once and then keeps per-prefix counters up to date from its transitions (an
observer, `shoal/scheduler/observers.py`). The bar long-polls those counters
(`progress_poll`, answered early when everything is finished) on the client's existing
connection: no code is shipped to the scheduler, no message is sent per task, and with
no bar open nothing is counted at all.

Front ends: a text bar on stdout (a live line, one line per key prefix with
``multi=True``, redrawn in place on a terminal; without a terminal only the final state
is written) and, in Jupyter, an ipywidgets bar per prefix when ipywidgets is importable.
Errors and cancellations are counted and shown; they end the bar as soon as nothing is
left to wait for.
"""

from __future__ import annotations

import asyncio
import html
import logging
import sys
import time
from typing import Any

from dask.utils import parse_timedelta

from shoal.scheduler.observers import CANCELLED, DONE, ERRED, TOTAL

logger = logging.getLogger("shoal.diagnostics.progress")

__all__ = ["MultiProgressWidget", "ProgressBar", "TextProgressBar", "progress"]


def is_kernel() -> bool:
    """True inside a Jupyter/IPython kernel."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - any failure means "not a kernel"
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def _format_time(t: float) -> str:
    m, s = divmod(t, 60)
    h, m = divmod(int(m), 60)
    if h:
        return f"{h:2d}hr {m:2d}min {s:4.1f}s"
    if m:
        return f"{m:2d}min {s:4.1f}s"
    return f"{s:4.1f}s"


class ProgressBar:
    """Drives a front end from the scheduler's counters. `groups` maps a key prefix to
    ``(total, done, erred, cancelled)``. Await it (or call `wait()` on a blocking client)
    for the end; `finished` says whether it ended."""

    def __init__(self, keys: list, client: Any, complete: bool = True, interval: Any = "100ms"):
        self.keys = keys
        self.client = client
        self.complete = complete
        self.interval = float(parse_timedelta(interval, default="s"))
        self.groups: dict[str, tuple] = {}
        self.start = time.time()
        self.elapsed = 0.0
        self.finished = False
        self.status: str | None = None
        self._task: Any = None  # an asyncio or concurrent future, once started in the background

    # counters -------------------------------------------------------------------

    def _totals(self) -> tuple[int, int, int, int]:
        out = [0, 0, 0, 0]
        for g in self.groups.values():
            for i in range(4):
                out[i] += g[i]
        return out[TOTAL], out[DONE], out[ERRED], out[CANCELLED]

    # the polling loop (on the client's event loop) ------------------------------

    async def _run(self) -> ProgressBar:
        client = self.client
        client._flush()  # the scheduler must have seen the graph before we ask
        peer = client.scheduler_comm
        reply = await peer.request("progress_start", keys=list(self.keys), complete=self.complete)
        watch_id = reply["id"]
        try:
            while True:
                self._update(reply)
                if reply["finished"]:
                    break
                reply = await peer.request("progress_poll", watch_id=watch_id, wait=self.interval)
        except BaseException:
            if not peer.closed:
                peer.notify("progress_stop", watch_id=watch_id)
            self._stop("cancelled")
            raise
        _, _, erred, cancelled = self._totals()
        self._stop("error" if erred else "cancelled" if cancelled else "finished")
        return self

    def _update(self, reply: dict) -> None:
        self.groups = {name: tuple(g) for name, g in reply["groups"].items()}
        self.elapsed = time.time() - self.start
        self._draw(final=False)

    def _stop(self, status: str) -> None:
        self.status = status
        self.finished = True
        self.elapsed = time.time() - self.start
        self._draw(final=True)

    def _draw(self, final: bool) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def _run_quietly(self) -> ProgressBar:
        try:
            return await self._run()
        except Exception as e:  # noqa: BLE001 - e.g. the client closed under the bar
            logger.debug("progress bar stopped: %s", e)
            return self

    def _start_in_background(self) -> None:
        """Run on the client's loop without blocking the caller (async mode, notebooks)."""
        loop = getattr(self.client, "_aloop", None) or self.client.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._task = asyncio.ensure_future(self._run_quietly())
        else:
            self._task = asyncio.run_coroutine_threadsafe(self._run_quietly(), loop)

    def __await__(self):
        async def wait() -> ProgressBar:
            if self._task is None:
                return await self._run()
            if isinstance(self._task, asyncio.Future):
                return await self._task
            return await asyncio.wrap_future(self._task)

        return wait().__await__()


class TextProgressBar(ProgressBar):
    """``[####    ] | 45% Completed | 9/20 |  1.2s`` on `file` (stdout by default); with
    `multi`, one line per key prefix above the total."""

    def __init__(self, keys: list, client: Any, *, multi: bool = True, width: int = 40, file: Any = None, **kwargs: Any):
        super().__init__(keys, client, **kwargs)
        self.multi = multi
        self.width = width
        self.file = file
        self._lines_drawn = 0
        self._last_plain = time.monotonic()

    @property
    def _out(self) -> Any:
        return self.file if self.file is not None else sys.stdout

    def _bar(self, total: int, resolved: int) -> tuple[str, float]:
        frac = resolved / total if total else 1.0
        n = int(self.width * frac)
        return "#" * n + " " * (self.width - n), frac

    def _line(self, total: int, done: int, erred: int, cancelled: int) -> str:
        bar, frac = self._bar(total, done + erred + cancelled)
        text = f"[{bar}] | {frac * 100:3.0f}% Completed | {done + erred + cancelled}/{total}"
        if erred:
            text += f" | {erred} erred"
        if cancelled:
            text += f" | {cancelled} cancelled"
        return text

    def lines(self) -> list[str]:
        """The text of the bar as it stands (last line: the total and elapsed time)."""
        out = []
        if self.multi and len(self.groups) > 1:
            name_width = min(max(len(n) for n in self.groups), 30)
            for name in sorted(self.groups):
                out.append(f"{name[:30]:<{name_width}} {self._line(*self.groups[name])}")
        out.append(f"{self._line(*self._totals())} | {_format_time(self.elapsed)}")
        return out

    def _draw(self, final: bool) -> None:
        out = self._out
        tty = bool(getattr(out, "isatty", lambda: False)())
        if not tty:
            # logs and pipes: no carriage returns; a line every 10 s at most, and the end
            now = time.monotonic()
            if final or now - self._last_plain >= 10:
                self._last_plain = now
                out.write("\n".join(self.lines()) + "\n")
                out.flush()
            return
        lines = self.lines()
        text = ""
        if self._lines_drawn > 1:
            text += f"\x1b[{self._lines_drawn - 1}F"  # back to the first line of the bar
        text += "\n".join("\r\x1b[2K" + line for line in lines)
        self._lines_drawn = len(lines)
        if final:
            text += "\n"
        out.write(text)
        out.flush()


class MultiProgressWidget(ProgressBar):
    """An ipywidgets bar per key prefix (red on error), plus the total; for notebooks."""

    def __init__(self, keys: list, client: Any, *, multi: bool = True, **kwargs: Any):
        import ipywidgets

        super().__init__(keys, client, **kwargs)
        self.multi = multi
        self._w = ipywidgets
        self.bars: dict[str, Any] = {}
        self.labels: dict[str, Any] = {}
        self.elapsed_label = ipywidgets.HTML("")
        self.widget = ipywidgets.VBox([self.elapsed_label])

    def _row(self, name: str) -> None:
        w = self._w
        bar = w.FloatProgress(value=0.0, min=0.0, max=1.0)
        label = w.HTML("")
        self.bars[name], self.labels[name] = bar, label
        self.widget.children = (*self.widget.children, w.HBox([w.HTML(f"<b>{html.escape(name)}</b>"), bar, label]))

    def _draw(self, final: bool) -> None:
        groups = self.groups if self.multi else {"total": self._totals()}
        for name in sorted(groups):
            total, done, erred, cancelled = groups[name]
            if name not in self.bars:
                self._row(name)
            bar = self.bars[name]
            bar.value = (done + erred + cancelled) / total if total else 1.0
            if erred:
                bar.bar_style = "danger"
            elif cancelled:
                bar.bar_style = "warning"
            elif total and done == total:
                bar.bar_style = "success"
            extra = f" ({erred} erred)" if erred else f" ({cancelled} cancelled)" if cancelled else ""
            self.labels[name].value = html.escape(f"{done + erred + cancelled} / {total}{extra}")
        word = {"error": "Erred", "cancelled": "Cancelled"}.get(self.status or "", "Finished" if final else "Running")
        self.elapsed_label.value = f"<div>{word}: {html.escape(_format_time(self.elapsed))}</div>"

    def _ipython_display_(self, **kwargs: Any) -> None:
        from IPython.display import display

        display(self.widget, **kwargs)


def progress(
    *futures: Any,
    notebook: bool | None = None,
    multi: bool = True,
    complete: bool = True,
    group_by: Any = "prefix",
    **kwargs: Any,
) -> Any:
    """Show the progress of futures or (persisted) collections and what they depend on.

    In a terminal this blocks until everything is done, erred or cancelled, drawing a
    text bar (one per key prefix with `multi`). In a notebook (or with ``notebook=True``)
    it returns an ipywidgets bar right away when ipywidgets is installed. With an
    asynchronous client it never blocks: it returns the running bar, which can be
    awaited. kwargs: ``interval="100ms"``, ``width=40``, ``file`` (text bars).
    """
    from shoal.client.client import default_client
    from shoal.client.helpers import futures_of

    if group_by not in ("spans", "prefix") and not callable(group_by):
        raise ValueError("`group_by` should be 'spans', 'prefix', or a Callable")
    if group_by != "prefix":
        raise NotImplementedError("shoal groups progress bars by key prefix only (group_by='prefix')")
    futs = futures_of(list(futures))
    client = next((f.client for f in futs if f.client is not None), None) or default_client()
    keys = [f.key for f in futs]
    if notebook is None:
        notebook = is_kernel()
    common = {"complete": complete}
    for name in ("interval",):
        if name in kwargs:
            common[name] = kwargs.pop(name)
    if notebook:
        try:
            bar: ProgressBar = MultiProgressWidget(keys, client, multi=multi, **common)
        except ImportError:
            notebook = False
    if not notebook:
        bar = TextProgressBar(
            keys, client, multi=multi, width=kwargs.pop("width", 40), file=kwargs.pop("file", None), **common
        )
    if notebook or client.asynchronous:
        bar._start_in_background()
        return bar
    client.sync(bar._run)
    return None
