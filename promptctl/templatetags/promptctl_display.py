"""Template filters over ``promptctl.admin.display``: ``{% load promptctl_display %}``, then
``{{ run.finished_at|when }}``, ``{{ ticket.subject|truncated:60 }}``, ``{{ share|percent }}``,
``{{ score|decimal:3 }}``."""

from __future__ import annotations

from django import template

from promptctl.admin import display

register = template.Library()


@register.filter
def when(value):
    return display.when(value)


@register.filter
def truncated(value, length=40):
    return display.truncated(value, int(length))


@register.filter
def percent(value, digits=1):
    return display.percent(value, digits=int(digits))


@register.filter
def decimal(value, digits=3):
    return display.decimal(value, digits=int(digits))
