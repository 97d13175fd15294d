"""After publishing. Pure: ``failover`` (the next method when a job failed for
good; which statuses opt an address out) and ``trail`` (the page trail's rows
and the story it tells). I/O: ``statuses`` (delivery statuses recorded and acted
on), ``edge`` (a failover step published once), ``watchers`` (silent jobs and
interrupted failovers, every poll) and ``store`` (the trail in PostgreSQL).

The pure modules may use ``router.directory`` models, ``router.routing``'s pure
stages and ``schemas``; the I/O modules also ``router.db`` and ``router.kafka``.
"""
