"""Pages until someone answers: escalation policies, acknowledgements, ack links and
SMS replies ([Pages and escalation](../../docs/escalation.md)).

Pure, models in and models out (they may use ``router.routing``'s pure stages,
``router.directory.models`` and ``schemas``, and no I/O room):

- ``policy``: escalation policies and their steps, durations, who a step pages.
- ``escalation``: a page's state and its next move (the next step, the next round,
  or the end: ``unacknowledged``); what an acknowledgement does to it.
- ``tokens``: the signed ack links (HMAC-SHA256, several secrets, expiry).
- ``replies``: an SMS reply read as ``<code>A``, ``<code>R``, ``STOP`` or nothing.

I/O (they may also use ``router.db``, ``router.kafka``, ``router.settings``,
``router.metrics`` and ``router.delivery``'s trail):

- ``store``: policies and pages in PostgreSQL: pages opened, due steps claimed
  ``FOR UPDATE SKIP LOCKED``, acknowledgements applied once, reply codes.
- ``escalator``: the round every worker runs: claim due steps, route them,
  publish, wait for the acks, then mark them, in the claim's transaction.
- ``desk``: the Kafka edge of ``pages.acks`` and ``deliveries.replies``.
- ``links``: the HTTP pages of an ack link, served by ``router ingest``.
"""
