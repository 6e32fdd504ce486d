#!/usr/bin/env python3
"""WebSocket churn: keeps between LO and HI clients connected. Each client picks a behaviour:
normal (read 2-40 s, clean close), replay (?since=recent seq or 0), filtered, stall (stop
reading 10-60 s, then abort), abrupt (read a while, TCP abort), burst-reconnect.
Usage: ws.py DURATION_S LO HI   (relay on 127.0.0.1:$SOAK_PORT, default 47710).
Needs websockets (asyncio client, 14+) and Python 3.11+ (asyncio.timeout)."""
import asyncio, websockets, os, random, sys, time, collections, json
URL = f"ws://127.0.0.1:{int(os.environ.get('SOAK_PORT', '47710'))}/ws"
DUR = float(sys.argv[1]); LO = int(sys.argv[2]); HI = int(sys.argv[3])
stats = collections.Counter(); closes = collections.Counter()
live = 0; last_seq = 0
async def client():
    global live, last_seq
    kind = random.choices(["normal", "replay", "replay0", "filtered", "stall", "abrupt"], [30, 15, 3, 15, 12, 25])[0]
    q = ""
    if kind == "replay" and last_seq: q = f"?since={max(0, last_seq - random.randint(100, 20000))}"
    elif kind == "replay0": q = "?since=0"
    elif kind == "filtered": q = "?" + random.choice(["type=call.*", "vendor=tel4vn", "vendor=voip24h&type=call.ringing", "account=demo,main", "subject=nope"])
    live += 1
    try:
        async with websockets.connect(URL + q, max_queue=4, open_timeout=10, close_timeout=3, ping_interval=None, max_size=2**22) as ws:
            stats["connected:" + kind] += 1
            end = time.time() + random.uniform(2, 40)
            if kind == "stall":
                # read a bit, then stop reading; websockets stops reading the socket once max_queue is full
                try:
                    async with asyncio.timeout(random.uniform(0.5, 3)):
                        while True: await ws.recv()
                except TimeoutError: pass
                await asyncio.sleep(random.uniform(10, 60))
                ws.transport.abort(); stats["aborted"] += 1
                return
            try:
                while time.time() < end:
                    msg = await asyncio.wait_for(ws.recv(), timeout=max(0.01, end - time.time()))
                    stats["frames"] += 1
                    if msg[:3] == '{"c':
                        stats["control"] += 1
                    elif kind in ("normal", "abrupt") and random.random() < 0.01:
                        try: last_seq = max(last_seq, json.loads(msg)["seq"])
                        except Exception: pass
            except asyncio.TimeoutError:
                pass
            if kind == "abrupt":
                ws.transport.abort(); stats["aborted"] += 1
            else:
                await ws.close(); stats["clean"] += 1
    except websockets.ConnectionClosed as e:
        closes[str(e.rcvd.code if e.rcvd else "none")] += 1
    except Exception as e:
        stats["err:" + type(e).__name__] += 1
    finally:
        live -= 1

async def main():
    t0 = time.time(); tasks = set(); lastrep = t0
    target = random.randint(LO, HI)
    while time.time() - t0 < DUR:
        if random.random() < 0.02: target = random.randint(LO, HI)
        while live < target:
            t = asyncio.create_task(client()); tasks.add(t); t.add_done_callback(tasks.discard)
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)
        if time.time() - lastrep > 60:
            lastrep = time.time()
            print(time.strftime("%H:%M:%S"), f"live={live} target={target} last_seq={last_seq}", dict(sorted(stats.items())), "closes", dict(closes), flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    print("FINAL", dict(sorted(stats.items())), "closes", dict(closes), flush=True)
asyncio.run(main())
