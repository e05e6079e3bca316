"""Handlers of the dashboard, one module per page: parse, call the domain, render."""
