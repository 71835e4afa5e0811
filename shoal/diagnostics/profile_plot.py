"""Drawing a profile (`shoal.profile` call tree) as an icicle / flame graph in inline SVG.

`ProfileFigure(tree)` is what `Client.profile(plot=True)` returns beside the tree: `html`
is a complete self-contained page (no scripts, no network), `save(filename)` writes it,
notebooks render it inline. The root is at the top; each frame is a bar as wide as its
share of the samples, its callees below it; hovering shows the function, file, line and
sample count. Bars narrower than half a pixel are left out (their samples still count in
their parent's width), which bounds the size of the page. Every user string is escaped.
"""

from __future__ import annotations

import html
import os

from shoal.diagnostics.svg_page import SVGFigure, hue

__all__ = ["ProfileFigure", "profile_svg", "top_functions"]

_WIDTH = 1200
_ROW = 17
_MIN_PX = 0.5


def _color(filename: str) -> str:
    return hue(filename, 65, 70)


def profile_svg(tree: dict, width: int = _WIDTH, label: str = "profile") -> str:
    """The icicle graph of `tree` as one ``<svg>`` element."""
    esc = html.escape
    total = tree.get("count", 0)
    if not total:
        return f'<p class="empty">No samples in this {esc(label)}.</p>'
    bars: list[str] = []
    max_depth = 0
    scale = width / total
    # iterative walk: (node, depth, x offset in samples)
    stack: list[tuple[dict, int, float]] = [(tree, 0, 0.0)]
    while stack:
        node, depth, x0 = stack.pop()
        max_depth = max(max_depth, depth)
        count = node["count"]
        w = count * scale
        y = depth * _ROW
        if depth == 0:
            name, tip, color = "all", f"all: {total} samples", "#cccccc"
        else:
            d = node.get("description") or {}
            fname = str(d.get("filename", ""))
            name = str(d.get("name", ""))
            line = str(d.get("line", ""))
            tip = f"{name}  {fname}:{d.get('line_number', '')}\n{line}\n{count} samples, {100 * count / total:.1f}%"
            color = _color(fname)
        text = ""
        if w > 30:
            chars = int((w - 4) / 6.5)
            shown = name if len(name) <= chars else name[: max(chars - 1, 1)] + "…"
            text = f'<text x="{x0 * scale + 3:.2f}" y="{y + 12}">{esc(shown)}</text>'
        bars.append(
            f'<g><title>{esc(tip)}</title><rect x="{x0 * scale:.2f}" y="{y}" width="{w:.2f}" height="{_ROW - 1}" '
            f'fill="{color}" stroke="#ffffff" stroke-width="0.5"/>{text}</g>'
        )
        offset = x0
        for child in sorted(node["children"].values(), key=lambda c: -c["count"]):
            if child["count"] * scale >= _MIN_PX:
                stack.append((child, depth + 1, offset))
            offset += child["count"]
    height = (max_depth + 1) * _ROW + 2
    return (
        f'<svg width="{width}" height="{height}" role="img" '
        f'aria-label="{esc(label)}" style="font-family:monospace;font-size:11px">{"".join(bars)}</svg>'
    )


def top_functions(tree: dict, n: int = 20) -> list[tuple[str, str, int, int]]:
    """`[(function, file:line, own samples, total samples)]` for the `n` functions with
    the most samples including callees (a recursive function counts once per stack)."""
    own: dict[tuple[str, str], int] = {}
    incl: dict[tuple[str, str], int] = {}
    stack: list[tuple[dict, frozenset]] = [(c, frozenset()) for c in tree["children"].values()]
    while stack:
        node, seen = stack.pop()
        d = node.get("description") or {}
        ident = (str(d.get("name", "")), f"{os.path.basename(str(d.get('filename', '')))}:{d.get('line_number', '')}")
        child_count = sum(c["count"] for c in node["children"].values())
        own[ident] = own.get(ident, 0) + node["count"] - child_count
        if ident not in seen:
            incl[ident] = incl.get(ident, 0) + node["count"]
        inner = seen | {ident}
        stack.extend((c, inner) for c in node["children"].values())
    ranked = sorted(incl, key=lambda i: -incl[i])[:n]
    return [(name, where, own.get((name, where), 0), incl[(name, where)]) for name, where in ranked]


class ProfileFigure(SVGFigure):
    """An icicle graph of a profile tree; `html` is a complete page, `save` writes it."""

    def __init__(self, tree: dict, title: str = "Profile"):
        self.tree = tree
        self.title = title
        self.svg = profile_svg(tree)

    @property
    def caption(self) -> str:
        return f"{self.tree.get('count', 0)} samples"

    def __repr__(self) -> str:
        return f"<ProfileFigure: {self.tree.get('count', 0)} samples>"

