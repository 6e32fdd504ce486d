#!/usr/bin/env python3
"""Large events into a running relay, then a WebSocket replay of all of them.

    journal_memory.py PORT EVENTS PAD_BYTES

Posts EVENTS Tel4vn hangups (32 at a time), each with PAD_BYTES of padding
in `recording_url`, to 127.0.0.1:PORT (account `t`, key `k`), then reads
as many back from the journal's start (`?since=0`: the oldest pages).
Prints the seconds each took. journal_memory.sh runs it against each
binary and reads the relay's RSS around it.
"""
import asyncio
import json
import sys
import time

import aiohttp
import websockets


async def post_all(port: int, events: int, pad: str) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(events):
        queue.put_nowait(i)
    url = f"http://127.0.0.1:{port}/hooks/tel4vn/t"
    run = time.time_ns()  # each round's events are new ones, not duplicates
    headers = {"Authorization": "Bearer k", "content-type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = json.dumps({"call_id": f"mem-{run}-{i}", "state": "hangup", "direction": "inbound",
                               "to_number": "101", "recording_url": pad})
            async with session.post(url, data=body, headers=headers) as reply:
                await reply.read()
                if reply.status != 200:
                    raise SystemExit(f"event {i}: HTTP {reply.status}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*[worker(session) for _ in range(32)])


async def replay_all(port: int, events: int) -> float:
    """Seconds to read the first `events` events of the journal over the
    WebSocket (not counting the close, which waits behind the rest)."""
    seen = 0
    started = time.monotonic()
    url = f"ws://127.0.0.1:{port}/ws?since=0"
    async with websockets.connect(url, max_size=None, close_timeout=1) as ws:
        while seen < events:
            if '"seq"' in await ws.recv():
                seen += 1
        return time.monotonic() - started


def main() -> None:
    port, events, pad = int(sys.argv[1]), int(sys.argv[2]), "x" * int(sys.argv[3])
    started = time.monotonic()
    asyncio.run(post_all(port, events, pad))
    posted = time.monotonic() - started
    replayed = asyncio.run(replay_all(port, events))
    print(f"post {posted:.2f} s, replay {replayed:.2f} s")


main()
