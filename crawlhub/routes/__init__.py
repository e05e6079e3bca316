"""HTTP handlers of the API, one module per resource; `crawlhub.api` assembles them."""
