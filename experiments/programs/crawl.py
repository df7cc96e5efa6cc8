"""Fetch pages with aiohttp and parse each on the event loop, as users write it (issue 14's second program).

    CRAWL_BASE=http://127.0.0.1:8000 python crawl.py      # against `asyncsim serve`
    asyncsim twin crawl.py --services crawl.yaml           # in virtual time

Knobs (environment): PAGES (200), CONCURRENCY (50: the connector's limit), CRAWL_BASE
(https://docs.example.com). The parsing (a regex tokeniser, ~2 ms a page) holds the loop, so beyond some
concurrency it, not the site, sets the pace. Prints one JSON line: elapsed seconds, pages, words, failed.
"""

import asyncio
import json
import os
import re
import time

import aiohttp

WORD = re.compile(r"[a-z]+")
TEXT = "the quick brown fox jumps over the lazy dog " * 120


def parse(body: bytes) -> int:
    """Count the words of a page (its text stands in for the HTML a crawler would parse)."""
    return sum(len(WORD.findall(TEXT)) for _ in range(4)) + len(body)


async def fetch(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as resp:
        resp.raise_for_status()
        body = await resp.read()
    return parse(body)


async def main() -> None:
    base = os.environ.get("CRAWL_BASE", "https://docs.example.com")
    pages = int(os.environ.get("PAGES", 200))
    connector = aiohttp.TCPConnector(limit=int(os.environ.get("CONCURRENCY", 50)))
    start = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(fetch(session, f"{base}/page/{i}") for i in range(pages)),
                                       return_exceptions=True)
    elapsed = time.monotonic() - start
    failed = sum(isinstance(r, Exception) for r in results)
    words = sum(r for r in results if isinstance(r, int))
    print(json.dumps({"elapsed": elapsed, "done": pages - failed, "words": words, "failed": failed}))


if __name__ == "__main__":
    asyncio.run(main())
