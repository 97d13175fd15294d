"""On-call schedules: who is on call at an instant, and when that changes.

``oncall`` turns a schedule's definition (its time zone, rotations, explicit
shifts and overrides) into the users on call at ``t`` with the reason for
each, and into a timeline of handoffs; ``calendar`` writes a user's coming
on-call time as an iCalendar document. Both are pure: models in, models out.

They may use ``router.directory.models``, ``router.errors`` and ``schemas``,
the standard library's ``zoneinfo`` and the ``icalendar`` package; never an
I/O room (``router.db``, ``router.kafka``, ``router.http``).
"""
