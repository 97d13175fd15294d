"""The ``router`` command line: ``parser`` (arguments and exit codes), one module
per command group, ``values`` (command-line values, checked before anything is
written) and ``table`` (plain-text tables).

May use every room and ``router.app``; nothing below imports it.
"""
