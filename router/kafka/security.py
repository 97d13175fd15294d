"""Secured Kafka connections: settings -> an SSL context and FastStream's security object.

Every Kafka client the router makes (the worker's broker, the topic admin,
the CLI's producers) takes its security from here, so TLS and SASL are set in
one place. Secrets are :class:`pydantic.SecretStr` in the settings and leave
them only here, into the client.
"""

from __future__ import annotations

import ssl
from typing import Any

from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from router.errors import ConfigError
from router.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (None for the plaintext protocols).

    It verifies the broker against ``ROUTER_KAFKA_SSL_CA_FILE`` (else the
    system's CAs) and its host name, and presents a client certificate when
    one is configured (mutual TLS).
    """
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_file)
        if settings.kafka_ssl_cert_file:
            password = settings.kafka_ssl_key_password
            context.load_cert_chain(
                settings.kafka_ssl_cert_file,
                settings.kafka_ssl_key_file,
                password=password.get_secret_value() if password else None,
            )
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            "Cannot load the Kafka TLS files (ROUTER_KAFKA_SSL_CA_FILE, "
            f"ROUTER_KAFKA_SSL_CERT_FILE, ROUTER_KAFKA_SSL_KEY_FILE): {error.strerror or error}."
        ) from None
    return context


def broker_security(settings: Settings) -> BaseSecurity | None:
    """FastStream's security object for ``ROUTER_KAFKA_SECURITY_PROTOCOL`` and SASL settings."""
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings)
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    username = settings.kafka_sasl_username
    password = settings.kafka_sasl_password
    if not username or password is None:
        raise ConfigError(
            f"ROUTER_KAFKA_SECURITY_PROTOCOL={protocol} needs ROUTER_KAFKA_SASL_USERNAME and "
            "ROUTER_KAFKA_SASL_PASSWORD (or ROUTER_KAFKA_SASL_PASSWORD_FILE)."
        )
    kind = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }[settings.kafka_sasl_mechanism]
    return kind(
        username,
        password.get_secret_value(),
        ssl_context=context,
        use_ssl=protocol == "SASL_SSL",
    )


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients made outside the broker (admin, CLI producers)."""
    from faststream.kafka.security import parse_security

    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": settings.kafka_client_id,
    }
    options.update(parse_security(broker_security(settings)))
    return options
