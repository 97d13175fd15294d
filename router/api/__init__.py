"""``router api``: the directory over HTTP (users, contact methods, opt-outs, and
read-only trail, held pages and audit log), a FastAPI app that documents itself
as OpenAPI 3.1 and is served by :class:`router.http.health.HttpServer`.

An I/O edge, like ``router.ingest.edge``. It may use router.db (the store and
:mod:`router.db.api_store`), router.http, router.kafka, router.settings,
router.logging and the pure rooms (router.directory's rules above all, so the
API and the ``router contacts`` commands accept and refuse the same values).
It may not use router.cli or router.app.
"""
