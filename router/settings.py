"""The router's settings: one pydantic-settings class, read once, passed explicitly.

Every field is read from an environment variable named ``ROUTER_`` + the field
name in upper case (``kafka_bootstrap_servers`` -> ``ROUTER_KAFKA_BOOTSTRAP_SERVERS``).
``docs/settings.md`` lists them all; ``tests/unit/test_readme.py`` keeps the two in step.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from router.directory.targets import TargetPolicy, parse_networks
from router.ingest.mapping import IngestMapping, parse_severity_map
from router.pages.tokens import AckLinks
from router.routing.rules import RateLimit, RoutingOptions, parse_buckets, parse_duration
from schemas import Severity, Transport

#: Settings that may instead be read from a file named by ``ROUTER_<NAME>_FILE``.
SECRET_SETTINGS = (
    "database_url",
    "kafka_sasl_password",
    "kafka_ssl_key_password",
    "ingest_tokens",
    "api_read_tokens",
    "api_write_tokens",
    "ack_secret",
)


#: The setting that names each transport's topic.
_DELIVERY_TOPICS = {"email": "topic_email", "sms": "topic_sms", "webhook": "topic_webhook"}


class Settings(BaseSettings):
    """Everything the router can be told from the outside."""

    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore", frozen=True)

    # Connections
    kafka_bootstrap_servers: str = "localhost:9092"
    # libpq form; TLS with ?sslmode=verify-full&sslrootcert=/path/ca.pem
    database_url: SecretStr = SecretStr("postgresql://localhost:5432/router")
    group_id: str = "notification-router"
    kafka_client_id: str = "notification-router"
    # Idempotent producer: on for real Kafka; the embedded Tansu broker cannot
    # do InitProducerId, so the demo and the embedded test fixtures turn it off.
    kafka_enable_idempotence: bool = True
    kafka_auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    kafka_max_request_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    # The worker's producer: how long a send waits for others to share its
    # request, how large a per-partition batch grows, and its compression.
    # Defaults chosen with bench/throughput.py (docs/performance.md).
    kafka_linger_ms: int = Field(default=0, ge=0, le=1000)
    kafka_batch_bytes: int = Field(default=64 * 1024, ge=1024)
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    # Secured connections (TLS and SASL), for every Kafka client the router makes.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: str | None = None
    kafka_ssl_cert_file: str | None = None
    kafka_ssl_key_file: str | None = None
    kafka_ssl_key_password: SecretStr | None = None
    # Group membership: how fast a dead member is noticed and its partitions
    # move. Real Kafka refuses sessions below its group.min.session.timeout.ms (6 s).
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    # The longest a fetch with nothing to return waits at the broker. Kafka answers as
    # soon as a record arrives; Tansu looks for new records now and then and answers at
    # its next look (the embedded memory broker is given 50: see router.dev.embedded).
    kafka_fetch_max_wait_ms: int = Field(default=500, ge=1, le=10_000)
    # Static membership (KIP-345): a member that restarts with the same id
    # (e.g. the pod name) gets its partitions back without a rebalance.
    kafka_group_instance_id: str | None = None
    # read_committed: an alert whose producer aborted its transaction pages no one.
    kafka_isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"

    # Topics
    topic_alerts: str = "alerts"
    topic_email: str = "deliveries.email"
    topic_sms: str = "deliveries.sms"
    topic_webhook: str = "deliveries.webhook"
    topic_decisions: str = "routing.decisions"
    topic_dlq: str = "alerts.dlq"
    topic_contact_events: str = "contacts.events"
    topic_status: str = "deliveries.status"
    topic_acks: str = "pages.acks"
    topic_replies: str = "deliveries.replies"
    create_topics: bool = False
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)

    # Consuming
    batch_max_records: int = Field(default=500, ge=1)
    batch_timeout_ms: int = Field(default=100, ge=1)
    max_event_bytes: int = Field(default=256 * 1024, ge=256)
    retry_backoff_max_seconds: float = Field(default=30.0, gt=0)
    # While backing off after an outage, probe the failed dependency this often.
    recovery_probe_seconds: float = Field(default=0.5, gt=0)
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0)
    # Python's young-generation collection runs after this many net allocations (its
    # own default: 700); a routed batch keeps thousands of objects alive at once.
    gc_young_threshold: int = Field(default=100_000, ge=0)
    # A worker started while PostgreSQL or the broker is down waits this long for them.
    startup_wait_seconds: float = Field(default=60.0, ge=0)
    # A partition whose records the client cannot decode is paused, then retried this often.
    undecodable_retry_seconds: float = Field(default=300.0, gt=0)

    # Postgres pool
    db_pool_min_size: int = Field(default=1, ge=0)
    db_pool_max_size: int = Field(default=10, ge=1)
    # The in-process directory cache (0 users: off), invalidated by PostgreSQL
    # notifications; the TTL is a safety net, not the way changes arrive.
    directory_cache_users: int = Field(default=20_000, ge=0)
    directory_cache_ttl_seconds: float = Field(default=300.0, gt=0)
    # A directory of at most this many users is read whole at start and kept
    # (0: never); a larger one is cached as above.
    directory_preload_users: int = Field(default=200_000, ge=0)

    # Rules
    require_verified: bool = False
    dedup_window_seconds: int = Field(default=7 * 24 * 3600, ge=1)
    # Defaults modelled on GoAlert's per-contact-method limits.
    rate_limit_sms_count: int = Field(default=5, ge=1)
    rate_limit_sms_window_seconds: int = Field(default=15 * 60, ge=1)
    rate_limit_email_count: int = Field(default=20, ge=1)
    rate_limit_email_window_seconds: int = Field(default=15 * 60, ge=1)
    rate_limit_webhook_count: int = Field(default=60, ge=1)
    rate_limit_webhook_window_seconds: int = Field(default=60, ge=1)
    # Several COUNT/WINDOW buckets per transport ("1/60s,5/900s,12/3600s"); when
    # set, they replace the transport's single COUNT and WINDOW_SECONDS above.
    rate_limit_sms: str = ""
    rate_limit_email: str = ""
    rate_limit_webhook: str = ""
    janitor_interval_seconds: float = Field(default=600.0, gt=0)

    # Failover: a job of an error/critical page with no status within this long
    # ("120s", "2m") counts as failed. Empty: off (only reported failures count).
    failover_timeout_sms: str = ""
    failover_timeout_email: str = ""
    failover_timeout_webhook: str = ""
    # The page trail (decisions, jobs, statuses) is kept this long.
    trail_retention_seconds: int = Field(default=7 * 24 * 3600, ge=3600)
    # The audit log of directory changes (router audit, GET /v1/audit) is kept this long.
    audit_retention_seconds: int = Field(default=90 * 24 * 3600, ge=3600)

    # Held pages (quiet hours deferred, throttled pages bundled)
    held_poll_seconds: float = Field(default=5.0, gt=0)
    held_max_age_seconds: int = Field(default=24 * 3600, ge=60)

    # Pages until someone answers: due escalation steps are looked for this often;
    # ack links (both set: every job carries a signed ack_url, served by router ingest).
    escalation_poll_seconds: float = Field(default=1.0, gt=0)
    ack_base_url: str = ""
    ack_secret: SecretStr | None = None  # comma-separated; the first signs, any verifies
    ack_link_ttl: str = "24h"

    # Verification codes
    verification_code_ttl_seconds: int = Field(default=15 * 60, ge=30)
    verification_max_attempts: int = Field(default=5, ge=1)

    # Webhook targets (see router.directory.targets): https only, public addresses only.
    webhook_allow_http: bool = False
    webhook_allowed_hosts: str = ""  # comma-separated host names or addresses
    webhook_denied_networks: str = ""  # comma-separated CIDR ranges, refused on top

    # Rendering
    sms_max_segments: int = Field(default=3, ge=1, le=10)

    # Health, readiness and metrics endpoints (0 turns the HTTP port off)
    http_port: int = Field(default=8080, ge=0, le=65535)
    http_host: str = "0.0.0.0"  # noqa: S104 - probes and scrapers reach the pod's address

    # router ingest: HTTP in, alert events out (see router.ingest.edge)
    ingest_port: int = Field(default=8081, ge=1, le=65535)
    ingest_host: str = "0.0.0.0"  # noqa: S104 - senders reach the pod's address
    ingest_tokens: SecretStr | None = None  # comma-separated bearer tokens
    ingest_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    ingest_rate_per_second: float = Field(default=20.0, gt=0)
    ingest_burst: int = Field(default=100, ge=1)
    ingest_publish_timeout_seconds: float = Field(default=10.0, gt=0)
    # Slow clients: the request head, then the body, must arrive within these.
    ingest_header_timeout_seconds: float = Field(default=10.0, gt=0)
    ingest_body_timeout_seconds: float = Field(default=30.0, gt=0)
    ingest_schedule_label: str = "schedule"
    ingest_users_label: str = "users"
    ingest_severity_label: str = "severity"
    ingest_severity_map: str = (
        "page:critical,critical:critical,error:error,warning:warning,info:info"
    )
    ingest_default_severity: Severity = "warning"

    # router api: the directory over HTTP (see router.api)
    api_port: int = Field(default=8082, ge=1, le=65535)
    api_host: str = "0.0.0.0"  # noqa: S104 - clients reach the pod's address
    # Comma-separated bearer tokens, each "NAME:TOKEN" or a bare token; write implies read.
    api_read_tokens: SecretStr | None = None
    api_write_tokens: SecretStr | None = None
    api_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    api_rate_per_second: float = Field(default=20.0, gt=0)
    api_burst: int = Field(default=100, ge=1)
    api_header_timeout_seconds: float = Field(default=10.0, gt=0)

    # Logging
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """``ROUTER_<SECRET>_FILE`` (as Kubernetes mounts secrets) for each secret not set."""
        if not isinstance(data, dict):
            return data
        for name in SECRET_SETTINGS:
            path = os.environ.get(f"ROUTER_{name.upper()}_FILE")
            if path and name not in data:
                try:
                    data[name] = Path(path).read_text().rstrip("\r\n")
                except OSError as error:
                    # The path is not shown: no setting's value is (see describe_error).
                    raise ValueError(
                        f"ROUTER_{name.upper()}_FILE names a file that cannot be read "
                        f"({error.strerror})"
                    ) from None
        return data

    @field_validator("ingest_severity_map")
    @classmethod
    def _severity_map(cls, value: str) -> str:
        parse_severity_map(value)
        return value

    def ingest_tokens_list(self) -> tuple[str, ...]:
        """The accepted bearer tokens (several while one is being rotated)."""
        if self.ingest_tokens is None:
            return ()
        text = self.ingest_tokens.get_secret_value()
        return tuple(t.strip() for t in text.replace("\n", ",").split(",") if t.strip())

    def api_tokens(self) -> dict[str, tuple[str, bool]]:
        """router api's tokens: token -> (its name, may write). A bare token is named
        by its list and position (``write-1``); ``NAME:TOKEN`` names it."""
        found: dict[str, tuple[str, bool]] = {}
        for kind, secret in (("read", self.api_read_tokens), ("write", self.api_write_tokens)):
            text = secret.get_secret_value() if secret is not None else ""
            entries = [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]
            for index, entry in enumerate(entries, start=1):
                name, sep, token = entry.partition(":")
                if not sep or not name or not token:
                    name, token = f"{kind}-{index}", entry
                found[token] = (name, kind == "write" or found.get(token, ("", False))[1])
        return found

    def ingest_mapping(self) -> IngestMapping:
        """How router ingest turns alerts into events."""
        return IngestMapping(
            schedule_label=self.ingest_schedule_label,
            users_label=self.ingest_users_label,
            severity_label=self.ingest_severity_label,
            severities=parse_severity_map(self.ingest_severity_map),
            default_severity=self.ingest_default_severity,
        )

    @field_validator("webhook_denied_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    def target_policy(self) -> TargetPolicy:
        """What webhook URLs are accepted, on write and at routing time."""
        return TargetPolicy(
            allow_http=self.webhook_allow_http,
            allowed_hosts=frozenset(
                h.strip().lower().strip("[]")
                for h in self.webhook_allowed_hosts.split(",")
                if h.strip()
            ),
            denied_networks=parse_networks(self.webhook_denied_networks),
        )

    def routing_options(self) -> RoutingOptions:
        """What routing, held delivery and failover read of the site's settings: built
        once in the wiring and given to each, so none of them can miss one."""
        return RoutingOptions(
            sms_max_segments=self.sms_max_segments,
            require_verified=self.require_verified,
            target_policy=self.target_policy(),
            ack_links=self.ack_links(),
        )

    def ack_links(self) -> AckLinks | None:
        """The ack links' address and secrets, or None unless both are set."""
        text = self.ack_secret.get_secret_value() if self.ack_secret else ""
        secrets = tuple(t.strip() for t in text.replace("\n", ",").split(",") if t.strip())
        if not self.ack_base_url or not secrets:
            return None
        return AckLinks(self.ack_base_url, secrets, parse_duration(self.ack_link_ttl))

    def delivery_topic(self, transport: Transport) -> str:
        """The topic that delivery jobs of ``transport`` are published to."""
        return str(getattr(self, _DELIVERY_TOPICS[transport]))

    def group_instance_id(self, suffix: str = "") -> str | None:
        """The static member id for one consumer group (None: dynamic membership)."""
        if not self.kafka_group_instance_id:
            return None
        return self.kafka_group_instance_id + suffix

    def acks_group_id(self) -> str:
        """The consumer group of pages.acks."""
        return f"{self.group_id}.acks"

    def replies_group_id(self) -> str:
        """The consumer group of deliveries.replies."""
        return f"{self.group_id}.replies"

    def status_group_id(self) -> str:
        """The consumer group of the delivery-status stream."""
        return f"{self.group_id}.status"

    def contact_events_group_id(self) -> str:
        """The consumer group of the contacts.events subscriber (its own, beside the alerts')."""
        return f"{self.group_id}.contact-events"

    @field_validator(
        "failover_timeout_sms", "failover_timeout_email", "failover_timeout_webhook", "ack_link_ttl"
    )
    @classmethod
    def _timeout(cls, value: str) -> str:
        if value.strip():
            parse_duration(value)
        return value

    def failover_timeouts(self) -> dict[str, float]:
        """Seconds without a status after which a job counts as failed, per transport."""
        configured = {
            "sms": self.failover_timeout_sms,
            "email": self.failover_timeout_email,
            "webhook": self.failover_timeout_webhook,
        }
        return {t: float(parse_duration(v)) for t, v in configured.items() if v.strip()}

    @field_validator("rate_limit_sms", "rate_limit_email", "rate_limit_webhook")
    @classmethod
    def _buckets(cls, value: str) -> str:
        parse_buckets(value)
        return value

    def rate_limits(self) -> dict[str, tuple[RateLimit, ...]]:
        """The per-contact-method limits (buckets) of each transport."""
        return {
            "sms": parse_buckets(self.rate_limit_sms)
            or (RateLimit(self.rate_limit_sms_count, self.rate_limit_sms_window_seconds),),
            "email": parse_buckets(self.rate_limit_email)
            or (RateLimit(self.rate_limit_email_count, self.rate_limit_email_window_seconds),),
            "webhook": parse_buckets(self.rate_limit_webhook)
            or (RateLimit(self.rate_limit_webhook_count, self.rate_limit_webhook_window_seconds),),
        }

    def output_topics(self) -> list[str]:
        """Every topic the router writes to."""
        return [
            self.topic_email,
            self.topic_sms,
            self.topic_webhook,
            self.topic_decisions,
            self.topic_dlq,
        ]

    def input_topics(self) -> list[str]:
        """Every topic the router reads."""
        return [
            self.topic_alerts,
            self.topic_contact_events,
            self.topic_status,
            self.topic_acks,
            self.topic_replies,
        ]

    def all_topics(self) -> list[str]:
        """Every topic the router reads or writes."""
        return [*self.input_topics(), *self.output_topics()]
