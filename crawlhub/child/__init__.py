"""Code that runs inside the spider's interpreter; it imports nothing of the server."""
