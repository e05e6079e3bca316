"""Data quality end to end: a Scrapy spider crawls a local shop that changes between runs
(a field disappears, the item count halves, 403s appear); each change gives the expected
verdict, reasons and alert; rules learnt from a good run catch a run that breaks them; a
spider without rules is unaffected."""

import io
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.integration.harness import Hub, html_answer, serve_in_thread

SPIDER = """
import scrapy


class ProductsSpider(scrapy.Spider):
    name = "products"

    def __init__(self, start_url="", **kwargs):
        super().__init__(**kwargs)
        self.start_url = start_url

    async def start(self):
        yield scrapy.Request(self.start_url)

    def parse(self, response):
        yield from response.follow_all(css="a.product", callback=self.product)

    def product(self, response):
        item = {"name": response.css("h1::text").get(), "url": response.url}
        price = response.css(".price::text").get()
        if price is not None:
            item["price"] = float(price)
        yield item
"""

SETTINGS = """
BOT_NAME = "shop"
SPIDER_MODULES = ["shop.spiders"]
ROBOTSTXT_OBEY = False
LOG_LEVEL = "INFO"
RETRY_ENABLED = False
"""

# Rules shipped with the project: versioned with each deploy.
SHIPPED = """
[quality.products]
coverage = { price = 0.9, name = { warn = 0.99, fail = 0.5 } }
items = { warn_below = 0.7, fail_below = 0.4, runs = 5 }

[quality.products.health]
finish_reasons = ["finished"]
max_status_share = { "403" = { warn = 0.01, fail = 0.2 } }
"""


class Shop:
    """A local shop whose catalogue the test changes between runs."""

    def __init__(self) -> None:
        self.products = 20
        self.prices = True
        self.forbidden_every = 0  # every n-th product answers 403 (0: none)
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/":
                    links = "".join(f'<a class="product" href="/p/{n}">{n}</a>'
                                    for n in range(1, shop.products + 1))  # fmt: skip
                    self.answer(200, f"<html><body>{links}</body></html>")
                    return
                number = int(self.path.rsplit("/", 1)[-1])
                if shop.forbidden_every and number % shop.forbidden_every == 0:
                    self.answer(403, "<html><body>forbidden</body></html>")
                    return
                price = f'<span class="price">{number * 1.5}</span>' if shop.prices else ""
                self.answer(200, f"<html><body><h1>Product {number}</h1>{price}</body></html>")

            def answer(self, status: int, body: str) -> None:
                html_answer(self, status, body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server, self.url = serve_in_thread(Handler)


@pytest.fixture
def shop() -> Iterator[Shop]:
    found = Shop()
    yield found
    found.server.shutdown()
    found.server.server_close()


def deploy(hub: Hub) -> None:
    files = {"scrapy.cfg": "[settings]\ndefault = shop.settings\n", "shop/__init__.py": "",
             "shop/settings.py": SETTINGS, "shop/spiders/__init__.py": "",
             "shop/spiders/products.py": SPIDER, "crawlhub.toml": SHIPPED}  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    assert hub.client.post("/api/projects", json={"name": "shop", "kind": "scrapy"}
                           ).status_code == 201  # fmt: skip
    sent = hub.client.post("/api/projects/shop/versions",
                           files={"file": ("shop.zip", buffer.getvalue())})  # fmt: skip
    assert sent.status_code == 201, sent.text
    for _ in range(600):
        version = hub.client.get("/api/projects/shop/versions/1").json()
        if version["environment"]["status"] != "building":
            break
        time.sleep(0.1)
    assert version["spiders"] == ["products"], version


def crawl(hub: Hub, shop: Shop) -> dict[str, Any]:
    task = hub.wait(hub.run("products", start_url=shop.url)["id"], timeout=90)
    assert task["status"] == "completed", task
    return task


def reasons(task: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    return {r["rule"]: (r["level"], r["observed"]) for r in task["quality"]["reasons"]}


def alerts_of(hub: Hub, task_id: str) -> list[dict[str, Any]]:
    found = hub.client.get("/api/alerts", params={"page_size": 100}).json()["items"]
    return [a for a in found if a["task_id"] == task_id]


def test_each_change_of_the_site_gives_its_verdict_reasons_and_alert(
    pg_hub: Hub, shop: Shop
) -> None:
    deploy(pg_hub)
    rules = pg_hub.client.get("/api/spiders/products/quality").json()
    assert rules["source"] == "version 1" and rules["rules"]["coverage"]["price"] == 0.9

    good = crawl(pg_hub, shop)
    assert (good["verdict"], good["items_count"]) == ("pass", 20), good["quality"]
    fields = good["quality"]["fields"]
    assert fields["price"]["coverage"] == 1.0 and fields["price"]["min"] == 1.5
    assert fields["price"]["max"] == 30.0 and fields["price"]["distinct"] == 20
    assert fields["name"]["len_min"] == len("Product 1") and fields["name"]["types"] == ["string"]

    shop.prices = False  # the price disappears
    priceless = crawl(pg_hub, shop)
    assert priceless["verdict"] == "fail"
    assert reasons(priceless) == {"coverage.price": ("fail", 0.0)}
    (alert,) = alerts_of(pg_hub, priceless["id"])
    assert alert["type"] == "quality_fail" and alert["level"] == "error"
    assert "coverage.price 0.0 (expected ≥ 0.9)" in alert["message"]

    shop.prices, shop.products = True, 10  # half the items
    halved = crawl(pg_hub, shop)
    assert halved["verdict"] == "warn", halved["quality"]
    assert reasons(halved) == {"items.warn_below": ("warn", 0.5)}
    (alert,) = alerts_of(pg_hub, halved["id"])
    assert alert["type"] == "quality_warn" and alert["level"] == "warning"
    assert "of the median 20 of 2 run(s)" in alert["message"]

    shop.products, shop.forbidden_every = 20, 4  # 5 of 21 responses are 403
    blocked = crawl(pg_hub, shop)
    assert blocked["verdict"] == "fail"
    assert reasons(blocked) == {"health.max_status_share.403": ("fail", round(5 / 21, 4))}

    failing = pg_hub.client.get("/api/tasks", params={"verdict": "fail"}).json()["items"]
    assert {t["id"] for t in failing} == {priceless["id"], blocked["id"]}


def test_rules_learnt_from_a_good_run_catch_a_run_that_breaks_them_and_mark_it_suspect(
    pg_hub: Hub, shop: Shop
) -> None:
    deploy(pg_hub)
    good = crawl(pg_hub, shop)
    learnt = pg_hub.client.post("/api/spiders/products/quality/learn",
                                json={"task_id": good["id"]})  # fmt: skip
    assert learnt.status_code == 200, learnt.text
    rules = learnt.json()["rules"]
    assert rules["schema"]["properties"]["price"] == {"type": "number"}
    assert rules["schema"]["required"] == ["name", "price", "url"]
    assert rules["coverage"] == {"name": 0.95, "price": 0.95, "url": 0.95}
    assert rules["health"]["finish_reasons"] == ["finished"]
    rules["on_fail"] = "suspect"  # edited before it is saved
    saved = pg_hub.client.put("/api/spiders/products/quality", json={"rules": rules})
    assert saved.status_code == 200 and saved.json()["source"] == "spider", saved.text

    shop.prices = False
    broken = crawl(pg_hub, shop)
    assert broken["verdict"] == "fail"
    found = reasons(broken)
    assert found["coverage.price"] == ("fail", 0.0)
    assert found["max_invalid_share"] == ("fail", 1.0)
    schema = broken["quality"]["schema"]
    assert schema["invalid"] == 20 and list(schema["errors"]) == ["(item): required"]
    assert '"price" is a required property' in schema["examples"][0]["errors"][0]
    assert broken["quality"]["suspect"] is True
    export = pg_hub.client.get("/api/data/export/jsonl", params={"task_id": broken["id"]})
    assert export.status_code == 200
    assert broken["id"] in export.headers["x-crawlhub-suspect"]
    assert "-SUSPECT.jsonl" in export.headers["content-disposition"]
    clean = pg_hub.client.get("/api/data/export/jsonl", params={"task_id": good["id"]})
    assert "x-crawlhub-suspect" not in clean.headers
    # Bad rules are refused with each mistake named.
    refused = pg_hub.client.put("/api/spiders/products/quality",
                                json={"rules": {"coverage": {"price": -1}, "schema": {"type": 5},
                                                "on_fail": "explode"}})  # fmt: skip
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    assert "quality.coverage.price" in message and "quality.schema" in message
    assert "quality.on_fail" in message


def test_a_spider_without_rules_gets_statistics_and_no_verdict(pg_hub: Hub) -> None:
    pg_hub.deploy("plain", {"main.py": """
        import sys

        def run(params):
            print("a warning", file=sys.stderr)
            return [{"n": n, "tag": "x" if n % 2 else ""} for n in range(10)]
    """})  # fmt: skip
    task = pg_hub.wait(pg_hub.run("plain")["id"])
    assert (task["status"], task["verdict"], task["items_count"]) == ("completed", None, 10)
    fields = task["quality"]["fields"]
    assert fields["tag"]["coverage"] == 0.5 and fields["tag"]["empty_share"] == 0.5
    assert fields["n"]["mean"] == 4.5 and "reasons" not in task["quality"]
    assert not alerts_of(pg_hub, task["id"])


def test_a_failing_verdict_runs_the_spider_again_once_when_its_rules_say_retry(
    pg_hub: Hub,
) -> None:
    pg_hub.deploy("thin", {"main.py": """
        def run(params):
            return [{"n": 1}]
    """})  # fmt: skip
    saved = pg_hub.client.put("/api/spiders/thin/quality",
                              json={"rules": {"items": {"min": 5}, "on_fail": "retry"}})  # fmt: skip
    assert saved.status_code == 200, saved.text
    first = pg_hub.wait(pg_hub.run("thin")["id"])
    assert first["verdict"] == "fail" and reasons(first) == {"items.min": ("fail", 1)}
    again_id = first["quality"]["retried_as"]
    again = pg_hub.wait(again_id)
    assert (again["trigger"], again["verdict"]) == ("retry", "fail")
    assert again["actor"] == f"quality check of {first['id']}"
    assert "retried_as" not in again["quality"]  # once only
    runs = pg_hub.client.get("/api/tasks", params={"spider_id": "thin"}).json()["items"]
    assert len(runs) == 2
