"""What the web and the workers both call: runs (create, cancel, requeue, read), the
dashboard's activity figures, Scrapyd's view of projects and jobs."""
