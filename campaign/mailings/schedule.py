"""When each delivery of a mailing falls due: now, at a time, or before the letter's meeting.

``{"before_meeting": "P3D", "local_time": "09:00"}`` means: three days before the
meeting starts, at 09:00 where the recipient is (the contact's timezone), so a
mission in Geneva and one in New York each receive it at the start of their day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaign.db import utcnow
from campaign.letters.models import Meeting

_DURATION = re.compile(
    r"\AP(?:(?P<weeks>\d{1,3})W)?(?:(?P<days>\d{1,3})D)?(?:T(?:(?P<hours>\d{1,4})H)?(?:(?P<minutes>\d{1,5})M)?)?\Z"
)
_LOCAL_TIME = re.compile(r"\A(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)\Z")
#: Times further ahead than this are refused as a likely mistake.
HORIZON = timedelta(days=400)


class ScheduleError(ValueError):
    """A send time that cannot be used; the message says why."""


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration of weeks, days, hours and minutes ("P3D", "PT12H", "P1DT6H")."""
    match = _DURATION.match((text or "").strip().upper())
    if not match or not any(match.groupdict().values()) or (text.upper().endswith("T")):
        raise ScheduleError(f"{text!r} is not a duration such as P3D (three days) or PT12H (twelve hours)")
    parts = {name: int(value or 0) for name, value in match.groupdict().items()}
    return timedelta(**parts)


def parse_local_time(text: str) -> time:
    match = _LOCAL_TIME.match((text or "").strip())
    if not match:
        raise ScheduleError(f"{text!r} is not a time of day such as 09:00")
    return time(int(match["hour"]), int(match["minute"]))


@dataclass(frozen=True)
class Plan:
    """A parsed schedule; ``due_for(timezone)`` gives one recipient's due time (UTC)."""

    at: datetime | None = None
    before: timedelta | None = None
    local_time: time | None = None
    meeting_starts: datetime | None = None

    def due_for(self, timezone: str) -> datetime:
        if self.before is None:
            return self.at or utcnow()
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        assert self.meeting_starts is not None and self.local_time is not None
        day = (self.meeting_starts - self.before).astimezone(zone).date()
        return datetime.combine(day, self.local_time, tzinfo=zone).astimezone(UTC)

    def describe(self) -> str:
        if self.before is not None:
            return f"{_spell(self.before)} before the meeting, at {self.local_time:%H:%M} in each recipient's timezone"
        if self.at is not None:
            return f"at {self.at:%d %B %Y, %H:%M} UTC"
        return "now"


def _spell(delta: timedelta) -> str:
    days, hours, minutes = delta.days, delta.seconds // 3600, delta.seconds % 3600 // 60
    parts = [
        f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute")) if n
    ]
    return ", ".join(parts) or "0 minutes"


def plan(request: dict[str, Any], meeting: Meeting | None, now: datetime | None = None) -> Plan:
    """Check a send request: nothing (now), ``at`` (an aware time or ISO text), or
    ``before_meeting`` with ``local_time``; refuses past, far-off and meeting-less times."""
    now = now or utcnow()
    at, before = request.get("at"), request.get("before_meeting")
    if at and before:
        raise ScheduleError("give either a time or a delay before the meeting, not both")
    if before:
        if meeting is None:
            raise ScheduleError("the letter has no meeting to send before")
        result = Plan(
            before=parse_duration(before),
            local_time=parse_local_time(request.get("local_time") or ""),
            meeting_starts=meeting.starts_at_aware,
        )
        if meeting.starts_at_aware <= now:
            raise ScheduleError("the meeting has already started")
        try:
            moment = meeting.starts_at_aware - result.before  # type: ignore[operator]
        except OverflowError:
            raise ScheduleError("that is too long before the meeting") from None
        if moment < now - timedelta(hours=14):
            # Recipients whose local time on that day has passed receive it at once; a day
            # that is over everywhere is refused as a mistake.
            raise ScheduleError(f"{_spell(result.before)} before the meeting is already past")  # type: ignore[arg-type]
        return result
    if not at:
        return Plan()
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ScheduleError(f"{at!r} is not an ISO 8601 time such as 2027-03-01T09:00:00+01:00") from None
    if at.tzinfo is None:
        raise ScheduleError("give the time with its offset from UTC (such as +01:00 or Z)")
    try:
        at = at.astimezone(UTC)
    except OverflowError:
        raise ScheduleError("that time is out of range") from None
    if at < now - timedelta(minutes=1):
        raise ScheduleError("that time has passed")
    if at > now + HORIZON:
        raise ScheduleError("that time is more than 400 days away")
    return Plan(at=max(at, now))
