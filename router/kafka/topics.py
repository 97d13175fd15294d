"""Make sure the router's topics exist before it consumes: create them or say which are missing."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from router.errors import KafkaSetupError
from router.kafka.security import client_options
from router.settings import Settings

_TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(settings: Settings) -> list[str]:
    """Create missing topics when ``ROUTER_CREATE_TOPICS`` is true; return the names created.

    With creation off, raise :class:`KafkaSetupError` naming every missing topic.
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
    except KafkaError as error:
        raise KafkaSetupError(
            f"Cannot reach Kafka at {settings.kafka_bootstrap_servers}: {error}. Check that it "
            "is running and that ROUTER_KAFKA_BOOTSTRAP_SERVERS is right."
        ) from error
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(settings.all_topics()) if t not in existing]
        if not missing:
            return []
        if not settings.create_topics:
            raise KafkaSetupError(
                f"Topics missing on {settings.kafka_bootstrap_servers}: {', '.join(missing)}. "
                "Create them, or set ROUTER_CREATE_TOPICS=true to let the router create them."
            )
        response = await admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=settings.topic_partitions,
                    replication_factor=settings.topic_replication_factor,
                )
                for name in missing
            ]
        )
        failed = [
            f"{topic} ({message or code})"
            for topic, code, message in response.topic_errors
            if code not in (0, _TOPIC_ALREADY_EXISTS)  # another pod may have won the race
        ]
        if failed:
            raise KafkaSetupError(f"Kafka refused to create topics: {', '.join(failed)}.")
        return missing
    except KafkaError as error:
        raise KafkaSetupError(f"Could not check or create topics: {error}.") from error
    finally:
        await admin.close()
