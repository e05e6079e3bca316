"""Data quality: rules per spider, per-field statistics of each run, and its verdict."""
