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
import shutil
import sys
import time
from typing import Any

from dask.utils import parse_timedelta

from shoal.scheduler.observers import CANCELLED, DONE, ERRED, TOTAL

logger = logging.getLogger("shoal.diagnostics.progress")

__all__ = [
    "MultiProgressBar", "MultiProgressWidget", "ProgressBar", "ProgressWidget", "TextProgressBar", "progress"
]  # fmt: skip


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
    for the end; `finished` says whether it ended.

    `keys` are futures or keys; `scheduler` (as in distributed) is None (the futures'
    client, else the default client), a `Client`, a `Scheduler`, or a scheduler address
    (a client of the bar's own is connected for the bar's lifetime when no client of this
    process is connected there)."""

    def __init__(
        self, keys: Any, scheduler: Any = None, interval: Any = "100ms", complete: bool = True, **kwargs: Any
    ):
        client = kwargs.pop("client", None)
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword arguments {sorted(kwargs)}")
        keys = list(keys) if not isinstance(keys, (str, bytes)) else [keys]
        self._own_client: Any = None
        if client is None:
            client, owned = _client_for(keys, scheduler)
            self._own_client = client if owned else None
        self.client = client
        self.keys = [getattr(k, "key", k) for k in keys]
        self._futures = [k for k in keys if hasattr(k, "key")]  # what is watched stays wanted
        self.complete = complete
        self.interval = float(parse_timedelta(interval, default="s"))
        self.groups: dict[str, tuple] = {}
        self.start = time.time()
        self.elapsed = 0.0
        self.finished = False
        self.status: str | None = None
        self._task: Any = None  # an asyncio or concurrent future, once started in the background

    def _start_or_block(self, start: bool) -> None:
        """`start=True` (distributed's default): block until the end on a blocking client
        outside its loop, else run in the background."""
        if not start:
            return
        if self.client.asynchronous or _on_loop(self.client.loop):
            self._start_in_background()
        else:
            self.client.sync(self._run)

    # counters -------------------------------------------------------------------

    def _totals(self) -> tuple[int, int, int, int]:
        out = [0, 0, 0, 0]
        for g in self.groups.values():
            for i in range(4):
                out[i] += g[i]
        return out[TOTAL], out[DONE], out[ERRED], out[CANCELLED]

    # the polling loop (on the client's event loop) ------------------------------

    async def _run(self) -> ProgressBar:
        try:
            await self._follow()
        finally:
            if self._own_client is not None:
                own, self._own_client = self._own_client, None
                await own.close()  # on its loop: an awaitable
        _, _, erred, cancelled = self._totals()
        self._stop("error" if erred else "cancelled" if cancelled else "finished")
        return self

    async def _follow(self) -> None:
        client = self.client
        client.outbox.flush()  # the scheduler must have seen the graph before we ask
        peer = client.scheduler_comm
        reply = await peer.request("progress_start", keys=list(self.keys), complete=self.complete)
        watch_id = reply["id"]
        try:
            while True:
                self._update(reply)
                if reply["finished"]:
                    return
                reply = await peer.request("progress_poll", watch_id=watch_id, wait=self.interval)
        except BaseException:
            if not peer.closed:
                peer.notify("progress_stop", watch_id=watch_id)
            self._stop("cancelled")
            raise

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
    `multi`, one line per key prefix above the total.

    On a terminal every line fits its width (`shutil.get_terminal_size`, asked at each
    redraw: a resized terminal is followed) and the bar is redrawn in place; the bar,
    then the words, then the prefix names shrink to make room. Output that is not a
    terminal (a log, a pipe) gets plain lines: one every 10 s at most, and the end.
    `start=True` (distributed's default) blocks until the end on a blocking client."""

    def __init__(
        self,
        keys: Any,
        scheduler: Any = None,
        interval: Any = "100ms",
        width: int = 40,
        loop: Any = None,
        complete: bool = True,
        start: bool = True,
        *,
        multi: bool = False,
        file: Any = None,
        **kwargs: Any,
    ):
        super().__init__(keys, scheduler, interval=interval, complete=complete, **kwargs)
        self.multi = multi
        self.width = width
        self.file = file
        self._lines_drawn = 0
        self._last_plain = time.monotonic()
        self._start_or_block(start)

    @property
    def _out(self) -> Any:
        return self.file if self.file is not None else sys.stdout

    def lines(self, columns: int | None = None, rows: int | None = None) -> list[str]:
        """The text of the bar as it stands (last line: the total and elapsed time), each
        line at most `columns - 1` characters (the terminal's width when None)."""
        if columns is None or rows is None:
            size = shutil.get_terminal_size()
            columns, rows = columns or size.columns, rows or size.lines
        room = max(columns - 1, 1)  # the last column stays free: no terminal wraps early
        rows_: list[tuple[str, tuple, float | None]] = []
        more = ""
        if self.multi and len(self.groups) > 1:
            names = sorted(self.groups)
            shown = names[: max(rows - 3, 1)]  # never more lines than the terminal shows
            name_width = min(max(len(n) for n in [*shown, "total"]), 30, max(room // 4, 1))
            rows_ = [(f"{name[:name_width]:<{name_width}} ", self.groups[name], None) for name in shown]
            if len(shown) < len(names):
                more = f"... and {len(names) - len(shown)} more prefixes"[:room]
            rows_.append((f"{'total'[:name_width]:<{name_width}} ", self._totals(), self.elapsed))
        else:
            rows_ = [("", self._totals(), self.elapsed)]
        out = layout(rows_, width=self.width, room=room)
        if more:
            out.insert(len(out) - 1, more)
        return out

    def _draw(self, final: bool) -> None:
        out = self._out
        tty = bool(getattr(out, "isatty", lambda: False)())
        if not tty:
            # logs and pipes: no carriage returns; a line every 10 s at most, and the end
            now = time.monotonic()
            if final or now - self._last_plain >= 10:
                self._last_plain = now
                out.write("\n".join(self.lines(columns=_PLAIN_COLUMNS, rows=_PLAIN_ROWS)) + "\n")
                out.flush()
            return
        lines = self.lines()
        text = ""
        if self._lines_drawn > 1:
            text += f"\x1b[{self._lines_drawn - 1}F"  # back to the first line of the bar
        text += "\n".join("\r\x1b[2K" + line for line in lines)
        if self._lines_drawn > len(lines):  # fewer lines than last time: clear the rest
            text += "\x1b[J"
        self._lines_drawn = len(lines)
        if final:
            text += "\n"
        out.write(text)
        out.flush()


#: how wide plain (not a terminal) progress lines are
_PLAIN_COLUMNS, _PLAIN_ROWS = 100, 50


def _stats(variant: int, total: int, done: int, erred: int, cancelled: int, elapsed: float | None) -> str:
    """What is done, in words: `variant` 0 in full, 1 shorter, 2 shortest."""
    resolved = done + erred + cancelled
    pct = f"{(resolved / total if total else 1.0) * 100:3.0f}%"
    when = f" | {_format_time(elapsed).strip()}" if elapsed is not None else ""
    if variant == 0:
        return (
            f" | {pct} Completed | {resolved}/{total}"
            + (f" | {erred} erred" if erred else "")
            + (f" | {cancelled} cancelled" if cancelled else "")
            + when
        )
    if variant == 1:
        return f" {pct} {resolved}/{total}" + (f" {erred} err" if erred else "") + (f" {cancelled} cnl" if cancelled else "")
    return f" {pct}" + (f" {erred} err" if erred else "")


def layout(rows: list[tuple[str, tuple, float | None]], *, width: int, room: int) -> list[str]:
    """Bar lines for `(label, (total, done, erred, cancelled), elapsed or None)` rows, each
    at most `room` characters, their bars of one width (at most `width`, at least 10):
    the fullest wording that lets every row fit, else no bar at all."""
    for variant in range(3):
        stats = [_stats(variant, *counts, elapsed) for _, counts, elapsed in rows]
        bar_width = min(width, *(room - len(label) - len(st) - 2 for (label, _, _), st in zip(rows, stats)))
        if bar_width >= 10:
            out = []
            for (label, (total, done, erred, cancelled), _), st in zip(rows, stats):
                frac = (done + erred + cancelled) / total if total else 1.0
                n = int(bar_width * frac)
                out.append(f"{label}[{'#' * n}{' ' * (bar_width - n)}]{st}")
            return out
    return [(label + _stats(1, *counts, None).lstrip())[:room] for label, counts, _ in rows]


class MultiProgressBar(TextProgressBar):
    """One text bar per key prefix above the total (`TextProgressBar` with ``multi=True``).
    `func` must be None (shoal groups by key prefix, as distributed's default)."""

    def __init__(
        self, keys: Any, scheduler: Any = None, func: Any = None, interval: Any = "100ms", complete: bool = False,
        **kwargs: Any,
    ):  # fmt: skip
        _check_grouping(func)
        kwargs.setdefault("multi", True)
        super().__init__(keys, scheduler, interval=interval, complete=complete, **kwargs)


def _check_grouping(func: Any) -> None:
    from dask.utils import key_split

    if func is not None and func is not key_split:
        raise NotImplementedError("shoal groups progress bars by key prefix only (func=None)")


class MultiProgressWidget(ProgressBar):
    """An ipywidgets bar per key prefix (red on error), plus the total; for notebooks.
    Runs in the background from when it is shown (or `progress` returns it)."""

    def __init__(
        self, keys: Any, scheduler: Any = None, minimize: bool = True, interval: Any = "100ms", func: Any = None,
        complete: bool = False, *, multi: bool = True, **kwargs: Any,
    ):  # fmt: skip
        import ipywidgets

        _check_grouping(func)
        super().__init__(keys, scheduler, interval=interval, complete=complete, **kwargs)
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
            text = html.escape(f"{done + erred + cancelled} / {total}")
            if erred:  # red, as the bar ("danger" is Jupyter's red)
                text += f' <span style="color: #d33; font-weight: bold">({erred} erred)</span>'
            elif cancelled:
                text += f" ({cancelled} cancelled)"
            self.labels[name].value = text
        word = {"error": "Erred", "cancelled": "Cancelled"}.get(self.status or "", "Finished" if final else "Running")
        self.elapsed_label.value = f"<div>{word}: {html.escape(_format_time(self.elapsed))}</div>"

    def _ipython_display_(self, **kwargs: Any) -> None:
        from IPython.display import display

        if self._task is None:
            self._start_in_background()
        display(self.widget, **kwargs)


class ProgressWidget(MultiProgressWidget):
    """One ipywidgets bar for all the keys (red on error); for notebooks."""

    def __init__(
        self, keys: Any, scheduler: Any = None, interval: Any = "100ms", complete: bool = False, loop: Any = None,
        **kwargs: Any,
    ):  # fmt: skip
        kwargs["multi"] = False
        super().__init__(keys, scheduler, interval=interval, complete=complete, **kwargs)


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
    common: dict[str, Any] = {"complete": complete, "client": client}
    if "interval" in kwargs:
        common["interval"] = kwargs.pop("interval")
    bar: ProgressBar | None = None
    if notebook:
        try:
            bar = MultiProgressWidget(keys, multi=multi, **common)
        except ImportError:
            notebook = False
    if bar is None:
        bar = TextProgressBar(
            keys, multi=multi, width=kwargs.pop("width", 40), file=kwargs.pop("file", None), start=False, **common
        )
    if notebook or client.asynchronous:
        bar._start_in_background()
        return bar
    client.sync(bar._run)
    return None


# distributed's names at this path (shoal._names): re-exports and named stubs
from shoal._names import lazy_exports  # noqa: E402

__getattr__, _ = lazy_exports(
    __name__,
    {},
    {
        'get_scheduler': "an internal of distributed's progress bars; pass a Client (or its address) as scheduler=",
    },
)
def _on_loop(loop: Any) -> bool:
    try:
        return asyncio.get_running_loop() is getattr(loop, "asyncio_loop", loop)  # Client.loop wraps it
    except RuntimeError:
        return False


def _client_for(keys: list, scheduler: Any) -> tuple[Any, bool]:
    """`(client, owned)`: the client a bar talks through (see `ProgressBar`)."""
    from shoal.client.client import Client, default_client

    if isinstance(scheduler, Client):
        return scheduler, False
    for k in keys:
        client = getattr(k, "client", None)
        if isinstance(client, Client) and scheduler is None:
            return client, False
    if scheduler is None:
        return default_client(), False
    address = scheduler if isinstance(scheduler, str) else getattr(scheduler, "address", None)
    if not isinstance(address, str):
        raise TypeError(f"scheduler must be a Client, a Scheduler or an address, got {scheduler!r}")
    try:
        client = default_client()
        if client.scheduler.address == address:
            return client, False
    except (ValueError, AttributeError):
        pass
    secret = getattr(scheduler, "secret", None)
    if secret is not None:
        from shoal.security import Security

        return Client(address, security=Security(secret), set_as_default=False), True
    return Client(address, set_as_default=False), True

