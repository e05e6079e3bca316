"""The broker, its queues and message names, Redis keys, and the live log streams."""
