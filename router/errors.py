"""The router's exceptions. Every one the router raises on purpose derives from
:class:`RouterError`, whose message is a full sentence saying what to do next.

    RouterError
    ├── ConfigError            settings or command-line values that cannot work
    ├── InvalidValue           a contact value, time zone or field refused on write
    ├── StoreError             anything from the Postgres directory
    │   ├── StoreUnavailable   cannot reach the database (retryable)
    │   ├── NotMigrated        the schema is missing or older than this code
    │   ├── NotFound           the user or contact method does not exist
    │   ├── Conflict           the write breaks a uniqueness rule
    │   └── PreconditionFailed the record changed since the caller read it (If-Match)
    ├── VerificationRefused    a wrong, expired or missing verification code
    ├── KafkaSetupError        topics missing or the broker refused to create them
    └── PublishFailed          the broker did not take a held-page or escalation round
"""

from __future__ import annotations


class RouterError(Exception):
    """Base of every error the router raises deliberately."""

    #: Process exit status when this error ends a command.
    exit_code = 1


class ConfigError(RouterError):
    """A setting or command-line value cannot work."""

    exit_code = 2


class InvalidValue(RouterError):
    """A value was refused on write; the message names the field and what is accepted."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field = field
        self.value = value
        self.expected = expected
        super().__init__(f"{field}: {value!r} {expected}")


class StoreError(RouterError):
    """Something went wrong in the Postgres directory."""


class StoreUnavailable(StoreError):
    """The database cannot be reached; the operation may succeed if retried."""

    exit_code = 3


class NotMigrated(StoreError):
    """The database schema is missing or older than this code expects."""

    exit_code = 3


class NotFound(StoreError):
    """A user or contact method that the operation names does not exist."""


class Conflict(StoreError):
    """The write would break a uniqueness rule (duplicate method, second primary)."""


class PreconditionFailed(StoreError):
    """The record is no longer the version the caller read (a stale ``If-Match``)."""


class KafkaSetupError(RouterError):
    """Topics are missing or could not be created at start-up."""

    exit_code = 3


class VerificationRefused(RouterError):
    """A verification code was wrong, expired, or never requested."""


class PublishFailed(RouterError):
    """The broker did not acknowledge every message of a round published outside a
    batch (held digests, escalation steps); the round's work stays for the next one."""
