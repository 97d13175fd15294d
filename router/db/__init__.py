"""PostgreSQL: ``store`` (the one module that runs the router's SQL, driver errors
translated at its boundary), ``sql/`` (named query blocks and ordered
migrations), ``migrate``, ``janitor`` (forgets what no rule needs any more) and
``memstore``, the in-memory fake of the store for unit tests.

May use: the pure modules of the other rooms (for their types), ``router.errors``,
``router.metrics``, ``router.redact``. I/O room.
"""
