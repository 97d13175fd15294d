"""The Kafka edge: the fetch guard that keeps one undecodable partition from
stalling the others (``consume``), the worker's producer, broker and batch
subscribers (``adapters``), publishing a batch's output with every
acknowledgement observed (``publish``), jobs and decisions as records
(``records``, one builder for every path), topic creation (``topics``) and
secured connections (``security``).

May use: ``router.routing.dlq`` (the record type), ``router.errors``,
``router.metrics``, ``router.settings``, ``schemas``. I/O room.
"""
