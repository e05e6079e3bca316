"""The tour's example: every book of a shop, with its price.

By default it crawls the demo shop CrawlHub serves; give it another with
`-p start_url=...`.
"""

import scrapy


class BooksSpider(scrapy.Spider):
    name = "books"

    def __init__(self, start_url: str = "http://127.0.0.1:8000/demo/books/", **kwargs):
        super().__init__(**kwargs)
        self.start_url = start_url

    async def start(self):
        yield scrapy.Request(self.start_url)

    def parse(self, response):
        yield from response.follow_all(css="li a", callback=self.parse_book)

    def parse_book(self, response):
        yield {
            "title": response.css("h1::text").get(),
            "price": response.css(".price::text").get(),
            "url": response.url,
        }
