"""What runs in a worker process: claiming an attempt, its sandboxed spider, capturing its
output, recording its outcome; warm launchers, environments and versions on this machine."""
