"""The ``router`` command line: ``parser`` (arguments and exit codes), one module
per command group (``commands``, ``contact_commands``, ``bulk_commands``,
``schedule_commands``, ``api_commands``) that share ``common`` and never import
each other (an import-linter contract), ``values`` (command-line values, checked
before anything is written), ``status`` and ``table``.

May use every room and ``router.app``; nothing below imports it.
"""
