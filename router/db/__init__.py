"""PostgreSQL: ``pool`` (the asyncpg pool, the schema check, driver errors
translated once into :mod:`router.errors`), ``store`` (``Store``, the worker's
narrow interface, and ``PgStore``, every room's statements composed on one
pool), ``api_store`` and ``api_bulk`` (what ``router api`` adds: ETags,
idempotency keys, the audit log, batches and sync), ``sql/`` (named query blocks
and ordered migrations), ``migrate``, ``janitor`` (forgets what no rule needs
any more) and ``memstore``/``memschedules``, the in-memory fake for unit tests.

May use: the rooms' stores and pure modules, ``router.errors``,
``router.metrics``, ``router.redact``. I/O room.
"""
