"""API base: auth on every /api route, the error envelope, body limits, health, OpenAPI."""

import re
from pathlib import Path

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from crawlhub.api import create_app
from crawlhub.context import Context
from crawlhub.http import demo, scrapyd
from crawlhub.ui import routes as dashboard
from tests.conftest import make_settings

OPEN_PATHS = {"/healthz", "/readyz", "/metrics", "/api/login"}  # sign-in: test_signin.py


def api_routes(client: TestClient, templates: bool = False) -> list[tuple[str, str]]:
    """Every (method, concrete path) the app serves, taken from the app itself."""
    pairs = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if route in dashboard.ROUTES:  # signed-in browsers, not tokens: test_dashboard_auth.py
            continue
        if route in scrapyd.ROUTES:  # Scrapyd's own protocol and auth: test_scrapyd.py
            continue
        if route in demo.ROUTES:  # the tour's demo shop: public pages, no data
            continue
        assert isinstance(route, Route), f"unexpected route type {route!r}"
        path = route.path if templates else re.sub(r"{[^}]+}", "x", route.path)
        for method in sorted(route.methods or {"GET"}):
            if method != "HEAD":
                pairs.append((method, path))
    return pairs


def test_every_api_route_requires_a_valid_token(client: TestClient) -> None:
    routes = [(m, p) for m, p in api_routes(client) if p not in OPEN_PATHS]
    assert len(routes) >= 8
    for method, path in routes:
        assert path.startswith("/api/"), f"{path} is outside /api and so unauthenticated"
        for value in ("", "Bearer wrong", "Basic dGVzdA==", "Bearer ", "bearer"):
            headers = {"Authorization": value}
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"


def test_unknown_api_paths_are_401_before_404(client: TestClient) -> None:
    assert client.get("/api/nothing-here", headers={"Authorization": ""}).status_code == 401
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_wrong_method_is_405_in_the_envelope(client: TestClient) -> None:
    response = client.put("/api/spiders")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_malformed_json_and_wrong_content_type_are_400(client: TestClient) -> None:
    bad = client.post(
        "/api/spiders", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "bad_request"
    invalid_utf8 = client.post(
        "/api/spiders", content=b'{"name": "\xff"}', headers={"Content-Type": "application/json"}
    )
    assert invalid_utf8.status_code == 400
    form = client.post("/api/spiders", content=b"name=x", headers={"Content-Type": "text/plain"})
    assert form.status_code == 400
    not_object = client.post("/api/spiders", json=[1, 2])
    assert not_object.status_code == 422
    with_charset = client.post(
        "/api/spiders",
        content=b'{"name": "ok"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert with_charset.status_code == 201


def test_json_body_over_the_limit_is_413(client: TestClient) -> None:
    big = {"name": "big", "params": {"blob": "x" * (2 * 1024 * 1024)}}
    response = client.post("/api/spiders", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"

    def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: counted while streaming
        yield b'{"name": "big", "params": {"blob": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    streamed = client.post(
        "/api/spiders", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert client.get("/api/spiders").json()["total"] == 0


def test_healthz_and_readyz_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz", headers={"Authorization": ""}).json()["status"] == "ok"
    ready = client.get("/readyz", headers={"Authorization": ""})
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "migrations": "ok", "redis": "embedded"}


def test_readyz_checks_redis_when_configured(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    context = Context.build(make_settings(tmp_path, database_url=database_url, redis_url=redis_url))
    with TestClient(create_app(context)) as client:
        assert client.get("/readyz").json()["checks"]["redis"] == "ok"
    context.close()
    down = Context.build(
        make_settings(tmp_path, database_url=database_url, redis_url="redis://127.0.0.1:1/0")
    )
    with TestClient(create_app(down)) as client:
        response = client.get("/readyz")
    down.close()
    assert response.status_code == 503
    assert response.json()["checks"]["redis"] == "unreachable"


def test_readyz_reports_an_unreachable_database(tmp_path: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    context = Context.build(make_settings(tmp_path, database_url=url))
    with TestClient(create_app(context)) as client:
        response = client.get("/readyz")
    context.close()
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unreachable"
    assert "127.0.0.1:1" not in response.text


def test_openapi_describes_every_route_with_schemas(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    for method, path in api_routes(client, templates=True):
        if path != "/api/openapi.json":
            assert (method, path) in documented, (method, path)
    create = spec["paths"]["/api/spiders"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "SpiderCreate"
    )
    assert "201" in create["responses"] and "409" in create["responses"]
    upload = spec["paths"]["/api/spiders/{ref}/versions"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    listing = spec["paths"]["/api/spiders"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"page", "page_size", "kind"}
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    schemas = spec["components"]["schemas"]
    assert "SpiderOut" in str(schemas) and "ErrorResponse" in str(schemas)


@pytest.mark.parametrize(
    "path", ["/api/spiders/%00", "/api/spiders/" + "a" * 5000, "/api/spiders/'%20OR%201=1--"]
)
def test_hostile_path_parameters_are_404_not_500(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404
