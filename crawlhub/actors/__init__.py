"""Dramatiq actors; `crawlhub.worker` installs the broker before importing them."""
