"""Which paths are Scrapyd's (and so ask for a token), and sizes as Twisted lists them."""

import warnings

import pytest

from crawlhub.http.scrapyd import is_scrapyd_path
from crawlhub.http.scrapyd.site import file_size


@pytest.mark.parametrize("path", [
    "/scrapyd", "/scrapyd/", "/scrapyd/jobs", "/scrapyd/anything", "/listjobs.json",
    "/schedule.json", "/jobs", "/logs", "/logs/", "/logs/p/s/j.log", "/items", "/items/p/",
])  # fmt: skip
def test_scrapyds_paths_are_its_own(path: str) -> None:
    assert is_scrapyd_path(path)


@pytest.mark.parametrize("path", [
    "/", "/runs", "/runs/x", "/jobs/", "/jobsx", "/logsx", "/itemsx/", "/other.json",
    "/api/tasks", "/login", "/spiders/logs",
])  # fmt: skip
def test_the_dashboards_and_apis_paths_are_not(path: str) -> None:
    assert not is_scrapyd_path(path)


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 54_321, 1024**2 - 1, 1024**2,
                                  5 * 1024**2 + 7, 1024**3, 3 * 1024**3 + 1])  # fmt: skip
def test_sizes_are_written_as_twisteds_folder_listing_writes_them(size: int) -> None:
    with warnings.catch_warnings():  # twisted.web warns of its own old names when imported
        warnings.simplefilter("ignore", DeprecationWarning)
        from twisted.web.static import formatFileSize
    assert file_size(size) == formatFileSize(size)
