"""The routing path of one batch. Pure stages: ``decode`` (bytes to an event or
a rejection), ``pipeline`` (recipients, rules, preference, fan-out), ``compiled`` (a
user's rules worked out once, on plain values), ``rules``,
``render``, ``build`` (the one job and decision builder), ``encode`` (jobs and
decisions made and written to bytes in one step), ``dlq`` (dead letters). I/O:
``handler`` (the Kafka batch handler that runs them), ``feedback`` (contact
events and delivery statuses, handled the same way), ``retry`` (retry after
outages, isolation of poison records, publishing with the DLQ rounds) and
``ledger`` (dedup, the trail's batch rows, rate-limit reservations and the
purge, in PostgreSQL).

The pure modules may use ``router.directory``'s pure modules,
``router.held.digest``, ``router.delivery``'s pure modules and ``schemas``; only
the I/O modules may use ``router.db``, ``router.kafka`` and ``router.delivery``'s
edge.
"""
