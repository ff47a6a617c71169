"""Charts of signatures for coordinators, drawn with ``campaign.charts`` (inline SVG, a table
beside each).  Regions are the UN regional groups, which is how delegations in New York and
Geneva count support.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from markupsafe import Markup

from campaign.charts import ACCENT, GRID, HEIGHT, INK, MARGIN_BOTTOM, MARGIN_LEFT, MARGIN_TOP, WIDTH
from campaign.charts import markup as _markup
from campaign.charts import svg as _svg
from campaign.charts import text as _text

AFRICA, ASIA_PACIFIC, EASTERN_EUROPE = "African Group", "Asia-Pacific Group", "Eastern European Group"
LATIN_AMERICA, WEOG, OTHER = "Latin American and Caribbean Group", "Western European and Others Group", "Other"
REGIONS = (AFRICA, ASIA_PACIFIC, EASTERN_EUROPE, LATIN_AMERICA, WEOG, OTHER)

# The 193 Member States by UN regional group (Kiribati sits with Asia-Pacific; the United States
# is counted with WEOG, where it takes part), then observers and territories people sign from.
_GROUPS = {
    AFRICA: """DZ AO BJ BW BF BI CV CM CF TD KM CG CD CI DJ EG GQ ER SZ ET GA GM GH GN GW KE LS LR LY MG MW
        ML MR MU MA MZ NA NE NG RW ST SN SC SL SO ZA SS SD TZ TG TN UG ZM ZW  EH RE YT SH""",
    ASIA_PACIFIC: """AF BH BD BT BN KH CN CY FJ IN ID IR IQ JP JO KZ KI KW KG LA LB MY MV MH FM MN MM NR NP KP OM
        PK PW PG PH QA KR WS SA SG SB LK SY TJ TH TL TO TM TV AE UZ VU VN YE  PS TW HK MO CK NU NC PF GU AS""",
    EASTERN_EUROPE: "AL AM AZ BY BA BG HR CZ EE GE HU LV LT ME MD PL RO RU RS SK SI MK UA  XK",
    LATIN_AMERICA: """AG AR BS BB BZ BO BR CL CO CR CU DM DO EC SV GD GT GY HT HN JM MX NI PA PY PE KN LC VC SR TT
        UY VE  PR AW CW SX BQ KY VG VI AI MS TC BM GF GP MQ""",
    WEOG: """AD AU AT BE CA DK FI FR DE GR IS IE IL IT LI LU MT MC NL NZ NO PT SM ES SE CH TR GB US  VA GL FO
        GI IM JE GG""",
}
REGION_OF: dict[str, str] = {code: group for group, codes in _GROUPS.items() for code in codes.split()}


def region_of(country: str) -> str:
    """The UN regional group of an ISO 3166-1 alpha-2 code; "Other" when it has none."""
    return REGION_OF.get((country or "").upper(), OTHER)


def cumulative_by_day(moments: Iterable[datetime | None]) -> list[tuple[date, int]]:
    """(day, approved so far) for every day from the first approval to the last, gaps filled."""
    per_day = Counter(moment.date() for moment in moments if moment is not None)
    if not per_day:
        return []
    first, last = min(per_day), max(per_day)
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    totals = itertools.accumulate(per_day.get(day, 0) for day in days)
    return [(first + timedelta(days=n), total) for n, total in enumerate(totals)]


def by_region(countries: Iterable[str]) -> list[tuple[str, int]]:
    """(region, count) for every region with signatures, in the regions' usual order."""
    counts = Counter(region_of(country) for country in countries)
    return [(region, counts[region]) for region in REGIONS if counts[region]]


def over_time_svg(points: Sequence[tuple[date, int]], chart_id: str = "over-time") -> Markup:
    """A step line of cumulative approved signatures by day."""
    total = points[-1][1] if points else 0
    if points:
        description = f"{total} approved signatures from {points[0][0]:%d %B %Y} to {points[-1][0]:%d %B %Y}."
    else:
        description = "No approved signatures yet."
    svg = _svg(chart_id, "Approved signatures over time (cumulative)", description)
    plot_w, plot_h = WIDTH - MARGIN_LEFT - 16, HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    base = MARGIN_TOP + plot_h
    ET.SubElement(svg, "line", {"x1": str(MARGIN_LEFT), "y1": str(base), "x2": str(WIDTH - 16), "y2": str(base),
                                "stroke": INK})  # fmt: skip
    _text(svg, MARGIN_LEFT - 6, base, "0", "end")
    if not points:
        _text(svg, WIDTH / 2, base - plot_h / 2, "No approved signatures yet", "middle")
        return _markup(svg)
    top = max(total, 1)
    _text(svg, MARGIN_LEFT - 6, MARGIN_TOP + 4, str(top), "end")
    ET.SubElement(svg, "line", {"x1": str(MARGIN_LEFT), "y1": str(MARGIN_TOP), "x2": str(WIDTH - 16),
                                "y2": str(MARGIN_TOP), "stroke": GRID})  # fmt: skip
    step = plot_w / max(len(points) - 1, 1)
    coordinates, previous_y = [], base
    for n, (_day, count) in enumerate(points):
        x, y = MARGIN_LEFT + n * step, base - plot_h * count / top
        coordinates += [f"{x:.1f},{previous_y:.1f}", f"{x:.1f},{y:.1f}"]
        previous_y = y
    ET.SubElement(svg, "polyline", {"points": " ".join(coordinates), "fill": "none", "stroke": ACCENT,
                                    "stroke-width": "2"})  # fmt: skip
    _text(svg, MARGIN_LEFT, HEIGHT - 12, f"{points[0][0]:%d %b %Y}")
    if len(points) > 1:
        _text(svg, WIDTH - 16, HEIGHT - 12, f"{points[-1][0]:%d %b %Y}", "end")
    return _markup(svg)


def by_region_svg(bars: Sequence[tuple[str, int]], chart_id: str = "by-region") -> Markup:
    """Horizontal bars: approved signatures per UN regional group."""
    total = sum(count for _, count in bars)
    description = (
        "; ".join(f"{region}: {count}" for region, count in bars) + f". {total} in all."
        if bars
        else "No approved signatures yet."
    )
    row, label_w = 30, 250
    height = max(len(bars), 1) * row + 16
    svg = _svg(chart_id, "Approved signatures by UN regional group", description, height)
    top = max((count for _, count in bars), default=1)
    bar_w = WIDTH - label_w - 60
    for n, (region, count) in enumerate(bars):
        y = 8 + n * row
        _text(svg, label_w - 8, y + 17, region, "end")
        width = max(bar_w * count / top, 1)
        ET.SubElement(svg, "rect", {"x": str(label_w), "y": str(y + 4), "width": f"{width:.1f}", "height": "18",
                                    "fill": ACCENT})  # fmt: skip
        _text(svg, label_w + width + 6, y + 17, str(count))
    if not bars:
        _text(svg, WIDTH / 2, 28, "No approved signatures yet", "middle")
    return _markup(svg)
