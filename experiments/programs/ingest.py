"""A RAG ingestion pipeline with asyncio.Queue stages, as users write it (issue 14's third program): read →
chunk (offloaded with run_in_executor) → embed (the openai client, a few workers) → write.

    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 python ingest.py     # against `asyncsim serve`
    asyncsim twin ingest.py --services ingest.yaml                 # in virtual time

Knobs (environment): DOCS (40), EMBEDDERS (4), WRITE_S (0.02: a database write per document). Prints one
JSON line: elapsed seconds, documents written, chunks, failed.
"""

import asyncio
import json
import os
import time

import openai


def chunk(doc: str) -> list[str]:
    """Split a document into chunks of 200 words (blocking work, sent to a thread)."""
    time.sleep(0.01)  # reading the file
    words = doc.split()
    return [" ".join(words[i:i + 200]) for i in range(0, len(words), 200)]


async def main() -> None:
    n = int(os.environ.get("DOCS", 40))
    write_s = float(os.environ.get("WRITE_S", 0.02))
    client = openai.AsyncOpenAI(api_key=os.environ.get("OPENAI_API_KEY", "sk-local"), max_retries=4)
    to_chunk: asyncio.Queue = asyncio.Queue()
    to_embed: asyncio.Queue = asyncio.Queue(maxsize=8)
    to_write: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    written, chunks, failed = [0], [0], [0]

    async def chunker() -> None:
        while True:
            doc = await to_chunk.get()
            await to_embed.put(await loop.run_in_executor(None, chunk, doc))
            to_chunk.task_done()

    async def embedder() -> None:
        while True:
            parts = await to_embed.get()
            try:
                await client.embeddings.create(model="text-embedding-3-small", input=parts)
                await to_write.put(len(parts))
            except openai.APIError:
                failed[0] += 1
            to_embed.task_done()

    async def writer() -> None:
        while True:
            size = await to_write.get()
            await asyncio.sleep(write_s)
            written[0] += 1
            chunks[0] += size
            to_write.task_done()

    start = time.monotonic()
    workers = [asyncio.create_task(chunker()) for _ in range(2)]
    workers += [asyncio.create_task(embedder()) for _ in range(int(os.environ.get("EMBEDDERS", 4)))]
    workers.append(asyncio.create_task(writer()))
    for i in range(n):
        await to_chunk.put(f"doc {i} " + "retrieval augmented generation " * (300 + 40 * (i % 5)))
    for q in (to_chunk, to_embed, to_write):
        await q.join()
    elapsed = time.monotonic() - start
    for w in workers:
        w.cancel()
    await client.close()
    print(json.dumps({"elapsed": elapsed, "done": written[0], "chunks": chunks[0], "failed": failed[0]}))


if __name__ == "__main__":
    asyncio.run(main())
