"""How a client command gets its API client: made from the global options (or the profile)
when the command first talks to the server."""

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
