"""The HTTP endpoints every service serves: health, readiness and metrics, on
uvicorn with the router's own timeouts.

May use: ``router.metrics``. I/O room.
"""
