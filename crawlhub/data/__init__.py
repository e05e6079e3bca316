"""Scraped items: queries, streamed exports in every format, deletion."""
