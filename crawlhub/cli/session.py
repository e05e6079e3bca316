"""What client commands share: their API client (made from the global options, or the
profile, when a command first talks to the server), `--json`, KEY=VALUE options."""

import json
from collections.abc import Callable
from typing import Any

import click

from crawlhub.cli import profile
from crawlhub.cli.client import Client

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")


class Api:
    """The client of a command, made when the command first talks to the server."""

    def __init__(self, url: str | None, token: str | None) -> None:
        self.url, self.token = url, token
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(*profile.resolve(self.url, self.token))
        return self._client


def pass_api(function: Callable[..., Any]) -> Callable[..., Any]:
    """Hand a command its API client as the first argument."""

    @click.pass_context
    def wrapper(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        return function(ctx.ensure_object(Api).client, *args, **kwargs)

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


def pairs(values: tuple[str, ...], what: str) -> dict[str, Any]:
    """KEY=VALUE options as a dict, each VALUE read as JSON when it parses, else as text."""
    parsed: dict[str, Any] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint=what)
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed
