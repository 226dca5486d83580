"""Formatting for eval pages: percentages, intervals, seconds, p-values."""

from django import template

register = template.Library()


@register.filter
def percent(value) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


@register.filter
def interval(value) -> str:
    return "—" if not value else f"{100 * value[0]:.0f}–{100 * value[1]:.0f}%"


@register.filter
def seconds(value) -> str:
    return "—" if value is None else f"{value:.2f}s"


@register.filter
def pvalue(value) -> str:
    return "—" if value is None else f"{value:.3g}"


@register.filter
def signed(value) -> str:
    return f"{value:+d}"


@register.filter
def arrow(direction: str) -> str:
    return {"right_to_wrong": "right → wrong", "wrong_to_right": "wrong → right"}.get(direction, direction)
