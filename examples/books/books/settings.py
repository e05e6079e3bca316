BOT_NAME = "books"
SPIDER_MODULES = ["books.spiders"]
ROBOTSTXT_OBEY = False
LOG_LEVEL = "INFO"
