"""Logging set-up shared by every process: one line per event on stdout."""

import logging
import sys

from crawlhub.errors import Reported

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO") -> None:
    """Send every logger's records to stdout, one line each."""
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    if root.getEffectiveLevel() > logging.DEBUG:
        # A failed attempt is one line (`worker.ending`); Dramatiq would add its traceback
        # and a line for each retry it schedules. Both are there at DEBUG.
        handler.addFilter(_no_reported_tracebacks)
        logging.getLogger("dramatiq.middleware.retries.Retries").setLevel(logging.WARNING)
    # Access logs are the web process's business, not a flood in every log line.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request's URL at INFO; for Slack, DingTalk and WeCom channels the URL
    # is the credential (…/send?access_token=…), and the CLI's output is for its user.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _no_reported_tracebacks(record: logging.LogRecord) -> bool:
    """Drop the records whose traceback is of an exception already reported (`Reported`)."""
    return not (record.exc_info and isinstance(record.exc_info[1], Reported))
