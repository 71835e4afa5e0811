"""What the offline diagnostics figures share: a stable colour per name, and a
self-contained HTML page around one inline SVG (no scripts, no network)."""

from __future__ import annotations

import html
import zlib


def hue(name: str, saturation: int = 60, lightness: int = 55) -> str:
    """A colour that is always the same for `name` (task prefix, file, worker)."""
    return f"hsl({zlib.crc32(name.encode('utf-8', 'replace')) % 360}, {saturation}%, {lightness}%)"


class SVGFigure:
    """A figure drawn as one ``<svg>`` (`self.svg`): `html` is a complete page, `save`
    writes it, notebooks show the SVG inline. Subclasses set `title`, `css` and `caption`."""

    title = ""
    css = ""
    svg = ""

    @property
    def caption(self) -> str:
        return ""

    @property
    def html(self) -> str:
        t = html.escape(self.title)
        return (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{t}</title>'
            f"<style>body{{font-family:sans-serif;margin:1em}}{self.css}</style></head>"
            f"<body><h2>{t}</h2><p>{html.escape(self.caption)}</p>{self.svg}</body></html>\n"
        )

    def save(self, filename: str) -> None:
        with open(filename, "w", encoding="utf-8") as f:
            f.write(self.html)

    def _repr_html_(self) -> str:
        return self.svg
