"""The HTTP API's parts: auth, body limits, errors, validation, SSE, models and handlers."""
