"""Entry module of `crawlhub worker`: the dramatiq CLI imports it for the broker and actors."""

from crawlhub.config import load_settings
from crawlhub.context import Context
from crawlhub.logs import setup_logging

settings = load_settings()
setup_logging(settings.log_level)
context = Context.build(settings)  # installs the broker and declares the actors on it
broker = context.broker
