"""Deployment schedules: 5-field POSIX cron expressions in an IANA timezone, as the API validates them.

Only what the API accepts: ``minute hour day-of-month month day-of-week`` with ``*``,
numbers, ranges ``a-b``, lists ``a,b`` and steps ``*/n`` or ``a-b/n``; day-of-week 0-7
(0 and 7 are Sunday). No seconds or year fields, no ``L W # ?``, no ``@daily``. When both
day fields are restricted a day matches if either does (POSIX). The emulator computes
``upcoming_runs_at`` from it; it never fires on its own (see ``deployments.deployment_fire``).
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo

from . import errors

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31), ("month", 1, 12), ("day-of-week", 0, 7))
_SEARCH_DAYS = 366 * 5  # "0 0 29 2 *" fires only in leap years


@dataclasses.dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday … 6 = Saturday (7 folded into 0)
    days_restricted: bool
    weekdays_restricted: bool
    timezone: zoneinfo.ZoneInfo

    def day_matches(self, day: datetime.date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def upcoming(self, after: datetime.datetime, count: int = 5) -> list[datetime.datetime]:
        """The next ``count`` fire times strictly after ``after`` (aware), as UTC datetimes."""
        local_after = after.astimezone(self.timezone)
        found: list[datetime.datetime] = []
        day = local_after.date()
        for _ in range(_SEARCH_DAYS):
            if self.day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        moment = datetime.datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.timezone)
                        if moment > local_after:
                            found.append(moment.astimezone(datetime.UTC))
                            if len(found) == count:
                                return found
            day += datetime.timedelta(days=1)
        return found


def _field_values(text: str, name: str, low: int, high: int, expression: str) -> frozenset[int]:
    def refuse(reason: str) -> errors.ApiError:
        return errors.invalid_request(
            f"schedule.expression {expression!r}: {name} field {text!r} {reason}. Use a 5-field POSIX cron "
            "expression (minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'."
        )

    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise refuse("has a step that is not a whole number of at least 1")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        else:
            first, dash, last = base.partition("-")
            if not first.isdigit() or (dash and not last.isdigit()):
                raise refuse("is not *, a number, a range or a list of those")
            start = int(first)
            end = int(last) if dash else (high if slash else start)
            if not (low <= start <= high and low <= end <= high) or end < start:
                raise refuse(f"is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def schedule_parse(expression: object, timezone: object) -> CronSchedule:
    """Validate ``expression`` and ``timezone``; a refusal names the field and the accepted syntax."""
    if not isinstance(expression, str) or not expression.strip():
        raise errors.invalid_request("schedule.expression is required: a 5-field POSIX cron expression.")
    if not isinstance(timezone, str) or not timezone:
        raise errors.invalid_request("schedule.timezone is required: an IANA timezone such as 'UTC'.")
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise errors.invalid_request(
            f"schedule.timezone {timezone!r} is not an IANA timezone; use e.g. 'UTC' or 'America/Los_Angeles'."
        ) from None
    fields = expression.split()
    if len(fields) != 5:
        raise errors.invalid_request(
            f"schedule.expression {expression!r} has {len(fields)} fields; use exactly 5 "
            "(minute hour day-of-month month day-of-week). Seconds, years and @shortcuts are not supported."
        )
    parsed = [
        _field_values(text, name, low, high, expression)
        for text, (name, low, high) in zip(fields, _FIELDS, strict=True)
    ]
    return CronSchedule(
        minutes=parsed[0],
        hours=parsed[1],
        days=parsed[2],
        months=parsed[3],
        weekdays=frozenset(day % 7 for day in parsed[4]),
        days_restricted=not fields[2].startswith("*"),
        weekdays_restricted=not fields[4].startswith("*"),
        timezone=zone,
    )
