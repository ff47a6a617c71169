"""Charts for coordinators as inline SVG, drawn on the server: no script, no inline style.

Each chart is ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` (referenced by
``aria-labelledby``) and uses presentation attributes (``fill=``), which the CSP allows;
the pages that show one print the same figures as a table beside it.  The domains draw
their own charts from these pieces (``campaign.signatures.charts``, ``campaign.mailings.report``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

from markupsafe import Markup

SVG_NS = "http://www.w3.org/2000/svg"
WIDTH, HEIGHT, MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 640, 260, 48, 36, 12
INK, ACCENT, GRID = "#1f2933", "#1d5fa8", "#d9dee3"


def svg(chart_id: str, title: str, description: str, height: int = HEIGHT) -> ET.Element:
    """An empty chart ``WIDTH`` wide, named by its title and described for screen readers."""
    root = ET.Element(
        "svg",
        {
            "xmlns": SVG_NS,
            "role": "img",
            "viewBox": f"0 0 {WIDTH} {height}",
            "width": "100%",
            "aria-labelledby": f"{chart_id}-title {chart_id}-desc",
            "class": "chart",
            "font-family": "sans-serif",
            "font-size": "12",
        },
    )
    ET.SubElement(root, "title", {"id": f"{chart_id}-title"}).text = title
    ET.SubElement(root, "desc", {"id": f"{chart_id}-desc"}).text = description
    return root


def text(parent: ET.Element, x: float, y: float, label: str, anchor: str = "start") -> None:
    ET.SubElement(parent, "text", {"x": f"{x:.1f}", "y": f"{y:.1f}", "fill": INK, "text-anchor": anchor}).text = label


def markup(root: ET.Element) -> Markup:
    return Markup(ET.tostring(root, encoding="unicode"))  # noqa: S704 - built by ElementTree, which escapes


def stacked_bars_svg(
    chart_id: str,
    title: str,
    bars: Sequence[tuple[str, Mapping[str, int]]],
    series: Sequence[tuple[str, str, str]],
    empty: str = "Nothing to show yet.",
) -> Markup:
    """Horizontal bars, one per ``(label, counts)``, each cut into ``series`` (key, label, colour)
    in that order and as long as its total relative to the longest; a legend above.

    The description reads every bar's figures, so the chart says the same as the table
    the page prints beside it."""
    names = {key: name for key, name, _ in series}
    lines = []
    for label, counts in bars:
        parts = ", ".join(f"{names[key]} {counts.get(key, 0)}" for key in names if counts.get(key, 0))
        lines.append(f"{label}: {sum(counts.get(key, 0) for key in names)} ({parts or 'none'})")
    description = "; ".join(lines) + "." if bars else empty
    row = 28
    label_w = min(max((7 * len(label) + 16 for label, _ in bars), default=100), 300)  # about 7 units a character
    legend, x, y = [], 8.0, 6
    for _key, name, colour in series:
        width = 16 + 7 * len(name) + 16  # the swatch, the name, a gap
        if x + width > WIDTH and x > 8:
            x, y = 8.0, y + 20
        legend.append((x, y, name, colour))
        x += width
    legend_h = y + 22
    height = legend_h + max(len(bars), 1) * row + 12
    root = svg(chart_id, title, description, height)
    for x, y, name, colour in legend:
        ET.SubElement(root, "rect", {"x": f"{x:.1f}", "y": str(y), "width": "12", "height": "12", "fill": colour})
        text(root, x + 16, y + 10, name)
    top = max((sum(counts.get(key, 0) for key in names) for _, counts in bars), default=0) or 1
    bar_w = WIDTH - label_w - 60
    for n, (label, counts) in enumerate(bars):
        y = legend_h + n * row
        text(root, label_w - 8, y + 17, label, "end")
        x = float(label_w)
        for key, name, colour in series:
            count = counts.get(key, 0)
            if not count:
                continue
            width = bar_w * count / top
            part = ET.SubElement(root, "rect", {"x": f"{x:.1f}", "y": f"{y + 4}", "width": f"{width:.1f}",
                                                "height": "18", "fill": colour})  # fmt: skip
            ET.SubElement(part, "title").text = f"{label}: {name} {count}"
            x += width
        text(root, x + 6, y + 17, str(sum(counts.get(key, 0) for key in names)))
    if not bars:
        text(root, WIDTH / 2, legend_h + 16, empty, "middle")
    return markup(root)
