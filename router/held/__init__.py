"""Held pages: ``digest`` (pure: what a held page is, its digest, whether it may
still go out) and ``scheduler``, the round every worker runs to claim due held
pages, publish their digests and mark them (I/O), plus the failover watchers.

``digest`` may use ``router.routing`` pure stages and ``router.directory``
models; ``scheduler`` may also use ``router.db`` and ``router.kafka``.
"""
