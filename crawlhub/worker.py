"""Entry module of `crawlhub worker`: the dramatiq CLI imports it to get the broker and actors."""

from crawlhub.broker import install_broker
from crawlhub.config import load_settings
from crawlhub.logs import setup_logging

settings = load_settings()
setup_logging(settings.log_level)
broker = install_broker(settings)

# Actor modules are imported here, after the broker exists (run: issue 3, alert: issue 5).
