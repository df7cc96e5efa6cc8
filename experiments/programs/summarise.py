"""Summarise documents with the openai client under a semaphore, as users write it (issue 14's first program).

    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 python summarise.py      # against `asyncsim serve`
    asyncsim twin summarise.py --services summarise.yaml               # in virtual time

Knobs (environment): DOCS (60), CONCURRENCY (16), MAX_RETRIES (6). Prints one JSON line: elapsed seconds,
documents summarised and failed.
"""

import asyncio
import json
import os
import time

import openai


async def summarise(client: openai.AsyncOpenAI, sem: asyncio.Semaphore, doc: str) -> str:
    async with sem:
        prompt = " ".join(doc.split()[:400])  # trim the document on the loop
        reply = await client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=120,
            messages=[{"role": "system", "content": "Summarise in three sentences."},
                      {"role": "user", "content": prompt}])
        return reply.choices[0].message.content or ""


async def main() -> None:
    docs = [f"document {i} " + "lorem ipsum dolor sit amet " * 200 for i in range(int(os.environ.get("DOCS", 60)))]
    client = openai.AsyncOpenAI(api_key=os.environ.get("OPENAI_API_KEY", "sk-local"),
                                max_retries=int(os.environ.get("MAX_RETRIES", 6)))
    sem = asyncio.Semaphore(int(os.environ.get("CONCURRENCY", 16)))
    start = time.monotonic()
    results = await asyncio.gather(*(summarise(client, sem, d) for d in docs), return_exceptions=True)
    elapsed = time.monotonic() - start
    await client.close()
    failed = sum(isinstance(r, Exception) for r in results)
    print(json.dumps({"elapsed": elapsed, "done": len(docs) - failed, "failed": failed}))


if __name__ == "__main__":
    asyncio.run(main())
