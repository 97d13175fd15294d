"""The directory. Pure: ``models`` (users, contact methods, shifts),
``addresses`` (normalize and mask), ``targets`` and ``webhook_headers`` (webhook
rules), ``verification``, ``bulk`` (import and export files) and ``edits`` (the
write rules the CLI and the API share). I/O: ``store`` (what the worker reads,
opt-outs, the LISTEN connection), ``writes`` (every
write to users and methods, with its audit row), ``manage`` (reads, shifts,
verification and import in PostgreSQL) and ``cache`` (the in-process directory
kept exact by PostgreSQL notifications).

The pure modules may use ``router.errors``, ``router.routing``'s pure stages and
``schemas``; the I/O modules also ``router.db`` and ``router.schedules.store``.
"""
