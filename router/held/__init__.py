"""Held pages: ``digest`` (pure: what a held page is, its digest, whether it may
still go out), ``store`` (claims in PostgreSQL, ``FOR UPDATE SKIP LOCKED``) and
``scheduler``, the round every worker runs to claim due held pages, publish
their digests and mark them.

``digest`` may use ``router.routing``'s pure stages and ``router.directory``
models; ``store`` and ``scheduler`` may also use ``router.db`` and ``router.kafka``.
"""
