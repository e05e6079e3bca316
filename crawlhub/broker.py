"""The one place the Dramatiq broker is built."""

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from crawlhub.config import Settings
from crawlhub.keys import DRAMATIQ_NAMESPACE, QUEUES


def build_broker(settings: Settings) -> dramatiq.Broker:
    """A RedisBroker for REDIS_URL, or Dramatiq's in-process broker when it is unset."""
    broker: dramatiq.Broker
    if settings.redis_url is None:
        broker = StubBroker()
    else:
        broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=settings.redis_url.get_secret_value(), namespace=DRAMATIQ_NAMESPACE
        )
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


def install_broker(settings: Settings) -> dramatiq.Broker:
    """Build the broker and make it Dramatiq's global one, before any actor is declared."""
    broker = build_broker(settings)
    dramatiq.set_broker(broker)
    return broker
