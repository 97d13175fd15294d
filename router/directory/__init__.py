"""The directory: ``models`` (users, contact methods, shifts), ``addresses``
(normalize and mask), ``targets`` (webhook SSRF rules), ``verification``,
``bulk`` (import and export files), all pure; and ``cache``, the in-process
directory kept exact by PostgreSQL notifications (I/O).

The pure modules may use ``router.errors`` and ``schemas`` only; ``cache`` may
use ``router.db``.
"""
