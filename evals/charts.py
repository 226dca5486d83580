"""Inline SVG charts for the admin: no JavaScript library, no network, escaped text.

``comparison_chart`` draws, per team, the baseline and candidate accuracy side
by side as horizontal bars with their Wilson 95% intervals as whiskers, so a
drop that lies inside both intervals looks as uncertain as it is.
"""

from __future__ import annotations

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

LABEL_WIDTH = 130
PLOT_WIDTH = 360
BAR_HEIGHT = 14
TEAM_GAP = 14
COLOURS = {"baseline": "#8a8f98", "candidate": "#2f6fb3", "regressed": "#b3362f"}


def _f(number: float) -> str:
    """Numbers are formatted before ``format_html`` (which turns its arguments into strings)."""
    return f"{number:.1f}"


def _x(fraction: float) -> float:
    return LABEL_WIDTH + PLOT_WIDTH * max(0.0, min(1.0, fraction))


def _bar(y: float, side: dict, colour: str, label: str) -> str:
    accuracy = side["accuracy"] or 0.0
    parts = [
        format_html(
            '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
            LABEL_WIDTH,
            y,
            _f(PLOT_WIDTH * accuracy),
            BAR_HEIGHT,
            colour,
            f"{label}: {side['correct']}/{side['total']}",
        )
    ]
    if side.get("interval"):
        low, high = side["interval"]
        middle = y + BAR_HEIGHT / 2
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#222" stroke-width="1.5" class="interval"/>',
                _f(_x(low)),
                _f(_x(high)),
                middle,
                middle,
            )
        )
        for edge in (low, high):
            parts.append(
                format_html(
                    '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#222" stroke-width="1.5"/>',
                    _f(_x(edge)),
                    _f(_x(edge)),
                    y + 3,
                    y + BAR_HEIGHT - 3,
                )
            )
    parts.append(
        format_html(
            '<text x="{}" y="{}" font-size="11" fill="#222">{}/{}</text>',
            _f(_x(1.0) + 6),
            y + BAR_HEIGHT - 3,
            side["correct"],
            side["total"],
        )
    )
    return "".join(parts)


def comparison_chart(result: dict) -> SafeString:
    """Per-team side-by-side accuracy bars with 95% intervals, from ``runs_compare`` output."""
    teams = result["teams"]
    row_height = 2 * BAR_HEIGHT + TEAM_GAP
    height = 28 + row_height * len(teams)
    width = LABEL_WIDTH + PLOT_WIDTH + 50
    parts = [
        format_html(
            '<svg class="evals-chart" role="img" aria-label="{}" width="{}" height="{}" viewBox="0 0 {} {}" '
            'xmlns="http://www.w3.org/2000/svg">',
            "accuracy per team, baseline and candidate, with 95% intervals",
            width,
            height,
            width,
            height,
        )
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="14" y2="{}" stroke="#ddd"/><text x="{}" y="10" font-size="10" '
                'text-anchor="middle" fill="#666">{}%</text>',
                _f(_x(tick)),
                _f(_x(tick)),
                height,
                _f(_x(tick)),
                int(tick * 100),
            )
        )
    y = 20
    for team, row in teams.items():
        colour = COLOURS["regressed"] if row["regressed"] else COLOURS["candidate"]
        parts.append(
            format_html(
                '<g class="team" data-team="{}"><text x="0" y="{}" font-size="12" font-weight="bold" fill="#222">{}</text>'
                '<text x="0" y="{}" font-size="10" fill="{}">{}</text>',
                team,
                y + BAR_HEIGHT,
                team,
                y + 2 * BAR_HEIGHT + 2,
                COLOURS["regressed"] if row["regressed"] else "#666",
                f"{row['delta']:+d}{' regressed' if row['regressed'] else ''}",
            )
        )
        parts.append(mark_safe(_bar(y, row["baseline"], COLOURS["baseline"], "baseline")))
        parts.append(mark_safe(_bar(y + BAR_HEIGHT, row["candidate"], colour, "candidate")))
        parts.append(mark_safe("</g>"))
        y += row_height
    parts.append(mark_safe("</svg>"))
    legend = format_html(
        '<p class="evals-legend"><span style="color:{}">■</span> baseline &nbsp; <span style="color:{}">■</span> candidate '
        '&nbsp; <span style="color:{}">■</span> candidate, regressed &nbsp; ├─┤ Wilson 95% interval</p>',
        COLOURS["baseline"],
        COLOURS["candidate"],
        COLOURS["regressed"],
    )
    return mark_safe("".join(str(part) for part in parts) + str(legend))


def progress_bar(*, done: int, total: int) -> SafeString:
    percent = 100.0 * done / total if total else 0.0
    return format_html(
        '<div class="evals-progress" title="{}/{}"><div class="evals-progress-fill" style="width:{}%"></div></div>'
        '<span class="evals-progress-text">{}/{}</span>',
        done,
        total,
        _f(percent),
        done,
        total,
    )


__all__ = ["comparison_chart", "progress_bar"]
