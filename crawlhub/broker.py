"""The one place the Dramatiq broker is built."""

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import current_millis, dq_name

from crawlhub.config import Settings
from crawlhub.keys import DRAMATIQ_NAMESPACE, QUEUES


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A RedisBroker for REDIS_URL, or Dramatiq's in-process broker when it is unset."""
    broker: dramatiq.Broker
    if settings.redis_url is None:
        broker = StubBroker()
    else:
        broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=settings.redis_url.get_secret_value(),
            namespace=DRAMATIQ_NAMESPACE,
            # Dramatiq keeps dead letters 7 days by default; operators need longer to notice.
            dead_message_ttl=settings.dead_letter_ttl_days * 86_400_000,
        )
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


def install_broker(settings: Settings) -> dramatiq.Broker:
    """Build the broker and make it Dramatiq's global one, before any actor is declared."""
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    return broker


def has_message(broker: dramatiq.Broker, queue: str, message_id: str) -> bool:
    """Whether the broker still holds a message (ready, delayed or being worked on).

    The in-process broker cannot lose a message while its process lives, and after a
    restart `crawlhub up` re-sends every pending task, so it always answers True.
    """
    if not isinstance(broker, RedisBroker):
        return True
    prefix = f"{DRAMATIQ_NAMESPACE}:{queue}"
    with broker.client.pipeline(transaction=False) as pipe:
        pipe.hexists(f"{prefix}.msgs", message_id)
        pipe.hexists(f"{prefix}.DQ.msgs", message_id)
        return any(pipe.execute())


def run_maintenance(broker: dramatiq.Broker, queue: str) -> None:
    """Run Dramatiq's Redis maintenance for a queue now, instead of by chance.

    It puts the unacknowledged messages of workers whose heartbeat expired back on the
    queue (and its delay queue) and drops dead letters older than their retention.
    """
    if not isinstance(broker, RedisBroker):
        return
    dispatch = broker.scripts["dispatch"]
    for name in (queue, dq_name(queue)):
        args = ["qsize", current_millis(), name, broker.broker_id, broker.heartbeat_timeout,
                broker.dead_message_ttl, 1, broker._max_unpack_size()]  # type: ignore[no-untyped-call]  # fmt: skip
        dispatch(args=args, keys=[broker.namespace])
