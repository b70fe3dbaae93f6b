"""Server-side SVG line charts for the admin: no JavaScript, no third-party assets."""

from dataclasses import dataclass
from datetime import date
from html import escape

PALETTE = ["#2563eb", "#16a34a", "#ea580c", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#4b5563"]


@dataclass(frozen=True)
class Series:
    name: str
    values: list[int]  # one value per day in the chart's `days`


def _tick_step(peak: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that puts `peak` within four ticks."""
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude * 4 >= peak:
                return step * magnitude
        magnitude *= 10


def line_chart(*, title: str, days: list[date], series: list[Series], width: int = 880, height: int = 300) -> str:
    """An accessible SVG chart of daily values; an empty-state message when every value is zero."""
    left, right, top, bottom = 48, 160, 32, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    step = _tick_step(max((max(s.values, default=0) for s in series), default=0))
    peak = step * 4
    count = max(len(days), 1)

    def x(index: int) -> float:
        return left + (plot_w * index / (count - 1) if count > 1 else plot_w / 2)

    def y(value: int) -> float:
        return top + plot_h - plot_h * value / peak

    parts = [
        # Its own size, shrunk to fit a narrower container: admin form rows size to their content.
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" style="max-width:100%;height:auto;font:12px sans-serif">',
        f'<title>{escape(title)}</title>',
        f'<text x="{left}" y="18" font-weight="bold">{escape(title)}</text>',
    ]
    for tick in range(5):
        value = step * tick
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     f'stroke="#e5e7eb"/><text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" '
                     f'fill="#6b7280">{value}</text>')
    label_every = max(1, count // 8)
    for index, day in enumerate(days):
        if index % label_every == 0:
            parts.append(f'<text x="{x(index):.1f}" y="{height - 14}" text-anchor="middle" fill="#6b7280">'
                         f'{day:%b %d}</text>')
    for position, line in enumerate(series):
        color = PALETTE[position % len(PALETTE)]
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(line.values))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        legend_y = top + 16 * position
        parts.append(f'<rect x="{left + plot_w + 16}" y="{legend_y}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{left + plot_w + 32}" y="{legend_y + 9}">{escape(line.name)} '
                     f'({sum(line.values)})</text>')
    if all(v == 0 for line in series for v in line.values):
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" '
                     f'fill="#6b7280">No activity in this period</text>')
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(*, title: str, labels: list[str], series: list[Series], unit: str = "", width: int = 880,
              height: int = 300) -> str:
    """An accessible SVG chart of grouped bars, one group per label (e.g. a document's pages) and one bar per
    series in each; an empty-state message when every value is zero."""
    left, right, top, bottom = 56, 160, 32, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    step = _tick_step(max((max(s.values, default=0) for s in series), default=0))
    peak = step * 4
    groups = max(len(labels), 1)
    group_w = plot_w / groups
    bar_w = max(1.0, group_w * 0.8 / max(len(series), 1))

    def y(value: int) -> float:
        return top + plot_h - plot_h * value / peak

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" style="max-width:100%;height:auto;font:12px sans-serif">',
        f'<title>{escape(title)}</title>',
        f'<text x="{left}" y="18" font-weight="bold">{escape(title)}</text>',
    ]
    for tick in range(5):
        value = step * tick
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
                     f'stroke="#e5e7eb"/><text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" '
                     f'fill="#6b7280">{value}{escape(unit)}</text>')
    label_every = max(1, groups // 20)
    for index, label in enumerate(labels):
        group_x = left + group_w * index + group_w * 0.1
        for position, bars in enumerate(series):
            value = bars.values[index]
            parts.append(f'<rect x="{group_x + bar_w * position:.1f}" y="{y(value):.1f}" width="{bar_w:.1f}" '
                         f'height="{top + plot_h - y(value):.1f}" fill="{PALETTE[position % len(PALETTE)]}">'
                         f'<title>{escape(label)}, {escape(bars.name)}: {value}{escape(unit)}</title></rect>')
        if index % label_every == 0:
            parts.append(f'<text x="{left + group_w * (index + 0.5):.1f}" y="{height - 14}" text-anchor="middle" '
                         f'fill="#6b7280">{escape(label)}</text>')
    for position, bars in enumerate(series):
        legend_y = top + 16 * position
        parts.append(f'<rect x="{left + plot_w + 16}" y="{legend_y}" width="10" height="10" '
                     f'fill="{PALETTE[position % len(PALETTE)]}"/><text x="{left + plot_w + 32}" y="{legend_y + 9}">'
                     f'{escape(bars.name)} ({sum(bars.values)}{escape(unit)})</text>')
    if all(v == 0 for bars in series for v in bars.values):
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" '
                     f'fill="#6b7280">No reading yet</text>')
    parts.append("</svg>")
    return "".join(parts)
