"""The one error tree of CrawlHub; only the API maps it to HTTP statuses."""

from typing import Any


class CrawlhubError(Exception):
    """Base of every error CrawlHub raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class BadRequest(CrawlhubError):
    """The request is malformed (not JSON, missing a required choice)."""

    code = "bad_request"


class Ambiguous(BadRequest):
    """A short id (an id's first characters) matches more than one object."""

    code = "ambiguous"


class Unauthorized(CrawlhubError):
    """No valid bearer token was presented."""

    code = "unauthorized"


class Forbidden(CrawlhubError):
    """The caller is known but their role or token does not allow the action."""

    code = "forbidden"


class NotFound(CrawlhubError):
    """The named object does not exist."""

    code = "not_found"


class Conflict(CrawlhubError):
    """The request contradicts the current state (duplicate name, finished task)."""

    code = "conflict"


class Fenced(Conflict):
    """An attempt lost its task to a newer attempt (or to the reaper): it writes nothing more."""

    code = "fenced"


class TooLarge(CrawlhubError):
    """A request body or an upload is over its size limit."""

    code = "too_large"


class InvalidInput(CrawlhubError):
    """The request is well formed but its values are not acceptable."""

    code = "invalid_input"


class InvalidArchive(InvalidInput):
    """An uploaded spider package is unsafe or cannot run."""

    code = "invalid_archive"


class ConfigError(CrawlhubError):
    """A setting in the environment is missing or invalid."""

    code = "config_error"


class Reported(Exception):
    """An exception raised to steer a library (Dramatiq's retries) about something already
    reported in one line where it happened: the console shows its traceback at DEBUG only."""


class ServiceUnavailable(CrawlhubError):
    """A backing service (database, Redis) cannot be reached."""

    code = "unavailable"


class GiveWay(ServiceUnavailable):
    """The database is up but asked a transaction to give way (a deadlock, a serialization
    failure) or this process had no free connection for it: try again shortly."""
