"""The HTTP server every service runs (uvicorn with the router's header
timeout): health, readiness and metrics (``health``), and the access log's
address scrubbing (``access``).

May use: ``router.metrics``. I/O room.
"""
