"""Development: ``demo`` (``router demo``, the whole path on one machine) and
``embedded`` (Tansu and PostgreSQL from PyPI wheels, for the demo and the tests).

May use every room except ``router.cli``.
"""
