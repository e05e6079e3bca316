"""Route handlers of the HTTP API, one module per resource; `crawlhub.api` assembles them."""
