"""A schedule's coming on-call time as an iCalendar (RFC 5545) document. Pure.

One event per stretch a user is on call (a rotation turn, a shift, an override
window, merged where they touch), so people can see their time in the calendar
they already use. Built with the ``icalendar`` package, which also parses it.
"""

from __future__ import annotations

from datetime import datetime

import icalendar

from router.schedules.oncall import Schedule, periods, utc

PRODID = "-//notification-router//on-call schedules//EN"


def on_call_calendar(
    schedule: Schedule,
    start: datetime,
    end: datetime,
    *,
    user_id: str | None = None,
    stamp: datetime,
) -> bytes:
    """The on-call stretches in ``[start, end)`` (only ``user_id``'s when given) as an
    ``.ics`` document; ``stamp`` is when it was made (RFC 5545's ``DTSTAMP``)."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    title = schedule.name or schedule.schedule_id
    calendar.add("x-wr-calname", f"On call: {title}" + (f" ({user_id})" if user_id else ""))
    calendar.add("x-wr-timezone", schedule.timezone)
    for user, begins, ends in periods(schedule, start, end, user_id):
        event = icalendar.Event()
        # Stable across exports of the same stretch, so a re-import updates in place.
        event.add("uid", f"{schedule.schedule_id}/{user}/{begins:%Y%m%dT%H%M%SZ}@router")
        event.add("dtstamp", utc(stamp))
        event.add("dtstart", begins)
        event.add("dtend", ends)
        event.add("summary", f"On call: {title} ({user})")
        event.add("description", f"{user} is on call for schedule {schedule.schedule_id}.")
        calendar.add_component(event)
    return bytes(calendar.to_ical())
