"""CrawlHub: a self-hosted platform for running web crawlers."""

__version__ = "0.1.0"
