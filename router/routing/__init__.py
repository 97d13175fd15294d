"""The routing path of one batch: ``decode`` (bytes to an event or a rejection),
``pipeline`` (recipients, rules, preference, fan-out), ``rules``, ``render``,
``dlq`` (dead letters), all pure; and ``handler``, the Kafka edge that runs them,
retries after outages, isolates poison records and publishes.

The pure modules may use ``router.directory`` (models, addresses, targets),
``router.held.digest``, ``router.delivery`` and ``schemas``; only ``handler``
may use the I/O rooms (``router.db``, ``router.kafka``).
"""
