"""The Kafka edge: the fetch guard that keeps one undecodable partition from
stalling the others (``consume``), publishing a batch's output with every
acknowledgement observed (``publish``), topic creation (``topics``) and secured
connections (``security``).

May use: ``router.errors``, ``router.metrics``, ``router.settings``. I/O room.
"""
