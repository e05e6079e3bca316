"""The `crawlhub` command: process entry points and the HTTP client commands."""
