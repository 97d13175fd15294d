"""``router ingest``: ``mapping`` (pure: Alertmanager, Grafana and CloudEvents
bodies to alert events) and ``edge`` (the HTTP edge: authenticate, limit, map,
publish).

``mapping`` may use ``router.routing.decode`` and ``schemas``; ``edge`` may also
use ``router.http`` and ``router.metrics``.
"""
