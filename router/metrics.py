"""The router's Prometheus metrics, all prefixed ``router_``, in one registry.

``docs/operating.md`` (Health and metrics) lists them; ``deploy/prometheus-rules.yml`` is
checked against :data:`NAMES` by a test. FastStream's own Kafka middleware adds
``router_faststream_*`` metrics (messages received, processed, in flight) to the
same registry.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS = Counter("router_events", "Alert events routed (decoded and planned).", registry=REGISTRY)
JOBS = Counter(
    "router_jobs", "Delivery jobs published, by transport.", ["transport"], registry=REGISTRY
)
DECISIONS = Counter(
    "router_decisions",
    "Decisions published, by outcome and reason (reason is empty when sent).",
    ["outcome", "reason"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "router_dead_letters",
    "Records sent to the DLQ, by reason code.",
    ["reason"],
    registry=REGISTRY,
)
FAILED_BATCHES = Counter(
    "router_failed_batches",
    "Batches that failed; retryable=true for outages (retried), false when the batch was "
    "then handled record by record.",
    ["retryable"],
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "router_batch_size",
    "Records per consumed batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
    registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "router_batch_duration_seconds",
    "Time to handle one batch, from decode to every acknowledgement.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
LEDGER_WAIT = Histogram(
    "router_ledger_wait_seconds",
    "Time a batch's handler waited, before handing its batch over, for the batch before "
    "it to be recorded (its ledger written, its offsets committed): the worker held back "
    "by PostgreSQL.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
DB_SECONDS = Histogram(
    "router_db_query_duration_seconds",
    "Time of the worker's PostgreSQL calls, by operation.",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
    registry=REGISTRY,
)
DB_ROUND_TRIPS = Counter(
    "router_db_round_trips",
    "Queries sent to PostgreSQL (each one a round trip), counted by asyncpg's query logger.",
    registry=REGISTRY,
)
LAG = Gauge(
    "router_consumer_lag",
    "Records behind the high watermark, per assigned partition of an input topic.",
    ["topic", "partition"],
    registry=REGISTRY,
)
ASSIGNED = Gauge(
    "router_assigned_partitions",
    "Partitions of an input topic this worker owns.",
    ["topic"],
    registry=REGISTRY,
)
UNDECODABLE = Gauge(
    "router_undecodable_partitions",
    "Partitions paused because the client cannot decode their records.",
    registry=REGISTRY,
)
DIRECTORY_CACHE = Counter(
    "router_directory_cache_lookups",
    "User lookups of the in-process directory cache, by result: hit, miss, or bypass "
    "(the cache is off while its notification connection is down).",
    ["result"],
    registry=REGISTRY,
)
DIRECTORY_CACHE_USERS = Gauge(
    "router_directory_cache_users",
    "Users held in the in-process directory cache.",
    registry=REGISTRY,
)
STATUSES = Counter(
    "router_delivery_statuses",
    "Delivery statuses recorded (each once), by status and whether the job is known.",
    ["status", "known"],
    registry=REGISTRY,
)
UNREACHABLE = Counter(
    "router_unreachable_pages",
    "Pages whose every method was tried without success (decision reason unreachable).",
    registry=REGISTRY,
)
HELD = Gauge(
    "router_held_pages",
    "Pages held (quiet hours deferred, throttled pages bundled) and not yet sent, per transport.",
    ["transport"],
    registry=REGISTRY,
)
INGEST_REQUESTS = Counter(
    "router_ingest_requests",
    "Requests to router ingest's endpoints, by endpoint and HTTP status.",
    ["endpoint", "code"],
    registry=REGISTRY,
)
INGEST_ALERTS = Counter(
    "router_ingest_alerts",
    "Alert events router ingest published (acknowledged by the broker), by endpoint.",
    ["endpoint"],
    registry=REGISTRY,
)
ESCALATIONS = Counter(
    "router_escalations",
    "Escalation steps paged after the first (a later step, or a new round), by step.",
    ["step"],
    registry=REGISTRY,
)
UNACKNOWLEDGED = Counter(
    "router_pages_unacknowledged",
    "Pages whose escalation policy ran out with nobody acknowledging.",
    registry=REGISTRY,
)
ACKS = Counter(
    "router_acks",
    "Acknowledgements and resolves received, by source (cli, link, sms, event...).",
    ["source"],
    registry=REGISTRY,
)
TIME_TO_ACK = Histogram(
    "router_time_to_ack_seconds",
    "From a page opening to its first acknowledgement or resolve.",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600),
    registry=REGISTRY,
)
REPLIES = Counter(
    "router_sms_replies",
    "Inbound SMS, by what they did: ack, resolve, opt_out, not_understood.",
    ["result"],
    registry=REGISTRY,
)
LOG_LINES_LOST = Counter(
    "router_log_lines_lost",
    "The router's log lines it could not write to stderr (closed, a broken pipe, a full "
    "disk) or render (a value no JSON encoder takes); routing goes on without them.",
    registry=REGISTRY,
)

#: Every metric name the router's processes export (counters with their ``_total``
#: suffix, histograms with their series), as registered above: FastStream's, added
#: when a broker is built, are not among them.
NAMES = frozenset(
    family.name + suffix
    for family in REGISTRY.collect()
    for suffix in {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}.get(
        family.type, ("",)
    )
)
