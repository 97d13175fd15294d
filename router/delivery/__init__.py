"""After publishing: ``failover`` (pure: the next method when a job failed for
good) and ``trail`` (pure: the page trail's rows and the story it tells).

May use: ``router.directory`` models, ``router.routing`` pure stages, ``schemas``.
"""
