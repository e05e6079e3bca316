"""Logging set-up shared by every process: one line per event on stdout."""

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "INFO") -> None:
    """Send every logger's records to stdout, one line each."""
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    # Access logs are the web process's business, not a flood in every log line.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # httpx logs every request's URL at INFO; for Slack, DingTalk and WeCom channels the URL
    # is the credential (…/send?access_token=…), and the CLI's output is for its user.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
