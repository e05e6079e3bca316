"""Why a Scrapy crawl got no page, told from its final stats."""

from crawlhub.worker.ending import zero_pages_hint


def test_no_hint_when_a_page_came_back() -> None:
    assert zero_pages_hint({"response_received_count": 3, "finish_reason": "finished"}) is None


def test_download_failures_are_named_with_their_counts() -> None:
    stats = {
        "downloader/request_count": 3,
        "downloader/exception_type_count/twisted.internet.error.ConnectionRefusedError": 2,
        "downloader/exception_type_count/twisted.internet.error.DNSLookupError": 1,
        "finish_reason": "finished",
    }
    assert zero_pages_hint(stats) == (
        "Scrapy crawled 0 pages: every request failed to download: "
        "2 x ConnectionRefusedError, 1 x DNSLookupError (finish reason: finished)"
    )


def test_filtered_requests_are_named() -> None:
    stats = {"scheduler/enqueued": 0, "offsite/filtered": 4, "finish_reason": "finished"}
    hint = zero_pages_hint(stats)
    assert hint == (
        "Scrapy crawled 0 pages: its requests were filtered out (offsite/filtered 4) "
        "(finish reason: finished)"
    )


def test_a_spider_that_made_no_request_is_pointed_at_its_start() -> None:
    hint = zero_pages_hint({"finish_reason": "finished", "log_count/INFO": 10})
    assert hint is not None and "made no request" in hint and "start_urls" in hint
