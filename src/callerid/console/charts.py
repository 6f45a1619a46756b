"""Charts drawn on the server as inline SVG (issue 13 §5): no JavaScript library, nothing fetched, nothing the
Content-Security-Policy would refuse (presentation attributes only: no ``style`` attribute, no ``<style>``).

Each chart is an ``<svg role="img">`` named by its ``<title>`` and described by its ``<desc>`` (a summary in
words), with a ``viewBox`` and no fixed size, so it scales to the width of its card (on a phone it keeps a readable
minimum width and scrolls inside the card: console.css). Every bar carries its own ``<title>`` (the exact numbers on
hover). The page shows the same numbers in a real table next to each chart: a chart is a picture of a table, never
the only place a number is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Colours with at least 3:1 contrast on white (WCAG non-text contrast); the legend and the tables name each series,
# so colour is never the only cue.
ANSWERED = "#1d4ed8"  # the console's accent
MISSED = "#b45309"  # amber
REJECTED = "#57606a"  # grey
BLOCKED = "#b91c1c"  # red: a possible spoofed call
RATE = "#1d4ed8"
_AXIS = "#57606a"
_GRID = "#d0d7de"
_TEXT = "#1f2328"

WIDTH = 720
HEIGHT = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 8, 12, 40
_FONT = 13
_MAX_X_LABELS = 8


@dataclass(frozen=True)
class Series:
    """One stacked part of each bar: its name (legend, bar titles), colour and one value per category."""

    name: str
    colour: str
    values: Sequence[int]


def nice_ceiling(value: float) -> int:
    """The smallest 1, 2 or 5 x 10^n at or above ``value`` (at least 1), so that the axis has round steps."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return int(step * power)
    return int(10 * power)  # pragma: no cover - the loop always returns


def axis_steps(top: int) -> int:
    """How many gridline steps divide a ``nice_ceiling`` top into whole numbers: 10 -> 5 (0, 2, 4...), 20 -> 4,
    50 -> 5, 2 -> 2, 1 -> 1."""
    leading = top // 10 ** math.floor(math.log10(top))
    return min({1: 5, 2: 4, 5: 5}.get(leading, 5), top)


def _number(value: int) -> str:
    return f"{value:,}"


def _open(chart_id: str, title: str, summary: str, width: int, height: int) -> list[str]:
    return [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title" aria-describedby="{escape(chart_id)}-desc" '
        f'xmlns="http://www.w3.org/2000/svg" font-size="{_FONT}" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(summary)}</desc>',
    ]


def stacked_bars(
    chart_id: str,
    title: str,
    summary: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    category_titles: Sequence[str] | None = None,
) -> Markup:
    """Vertical bars, one per category (a day), each stacked from ``series`` bottom up; a y axis with round steps
    and at most ``_MAX_X_LABELS`` category labels under the bars (every day still has its bar and its title)."""
    count = len(categories)
    titles = list(category_titles) if category_titles is not None else list(categories)
    totals = [sum(s.values[i] for s in series) for i in range(count)]
    top = nice_ceiling(max(totals, default=0))
    plot_width = WIDTH - _LEFT - _RIGHT
    plot_height = HEIGHT - _TOP - _BOTTOM
    parts = _open(chart_id, title, summary, WIDTH, HEIGHT)
    # The grid and the y axis in whole, round steps: 1, 2 or 5 x 10^n cut in 5, 4 or 5 (never finer than 1).
    steps = axis_steps(top)
    for step in range(steps + 1):
        y = _TOP + plot_height - plot_height * step / steps
        parts.append(f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}"/>')
        label = _number(top * step // steps)
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{_AXIS}">{label}</text>')
    if count:
        slot = plot_width / count
        bar = max(slot * 0.7, 1.0)
        every = max(1, math.ceil(count / _MAX_X_LABELS))
        for index in range(count):
            x = _LEFT + slot * index + (slot - bar) / 2
            base = _TOP + plot_height
            described = ", ".join(f"{_number(s.values[index])} {s.name.lower()}" for s in series)
            parts.append(f"<g><title>{escape(titles[index])}: {escape(described)}</title>")
            for part in series:
                value = part.values[index]
                if value <= 0:
                    continue
                height = plot_height * value / top
                base -= height
                parts.append(
                    f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{height:.1f}" fill="{part.colour}"/>'
                )
            # An invisible full-height target, so a day with small bars still shows its title on hover.
            parts.append(
                f'<rect x="{_LEFT + slot * index:.1f}" y="{_TOP}" width="{slot:.1f}" height="{plot_height}" '
                'fill="transparent"/></g>'
            )
            if index % every == 0:
                centre = _LEFT + slot * index + slot / 2
                parts.append(
                    f'<text x="{centre:.1f}" y="{HEIGHT - _BOTTOM + 18}" text-anchor="middle" fill="{_AXIS}">'
                    f"{escape(categories[index])}</text>"
                )
    parts.append(
        f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{_TOP + plot_height}" y2="{_TOP + plot_height}" '
        f'stroke="{_AXIS}"/>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))


def horizontal_bars(
    chart_id: str, title: str, summary: str, items: Sequence[tuple[str, float | None, str]], *, top: float = 1.0
) -> Markup:
    """One horizontal bar per item (name, value or None, the value as text), on a scale of 0..``top``; an item
    without a value (no calls to rate) is named with its text and no bar."""
    row = 32
    name_width = 170
    value_width = 130
    height = _TOP + row * max(len(items), 1) + 8
    plot_width = WIDTH - name_width - value_width - _RIGHT
    parts = _open(chart_id, title, summary, WIDTH, height)
    for index, (name, value, shown) in enumerate(items):
        y = _TOP + row * index
        short = name if len(name) <= 24 else name[:23] + "…"
        parts.append(f"<g><title>{escape(name)}: {escape(shown)}</title>")
        parts.append(
            f'<text x="{name_width - 8}" y="{y + row / 2 + 4:.1f}" text-anchor="end" fill="{_TEXT}">{escape(short)}'
            "</text>"
        )
        parts.append(f'<rect x="{name_width}" y="{y + 6}" width="{plot_width}" height="{row - 12}" fill="#eef3fd"/>')
        if value is not None and value > 0:
            width = plot_width * min(value, top) / top
            parts.append(f'<rect x="{name_width}" y="{y + 6}" width="{width:.1f}" height="{row - 12}" fill="{RATE}"/>')
        parts.append(
            f'<text x="{name_width + plot_width + 6}" y="{y + row / 2 + 4:.1f}" fill="{_TEXT}">{escape(shown)}</text>'
        )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))


def percent(rate: float | None) -> str:
    """An answer rate as the page shows it: ``87.5 %``; a dash without calls to rate."""
    return "—" if rate is None else f"{rate * 100:.1f} %"
