"""Running spiders: creating runs, claiming attempts, supervising the child, capturing output."""
