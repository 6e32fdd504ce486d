#!/usr/bin/env python3
"""Webhook load: ~RATE valid deliveries/s across 5 vendors (unique events + ~5% retries),
plus a trickle of refused ones: wrong key (401), bad JSON (400), oversized (413), unknown
vendor/account (404), raw sockets that disconnect mid-body, and bodies that stall mid-way.
Usage: hooks.py DURATION_S RATE   (relay on 127.0.0.1:$SOAK_PORT, default 47710).
Needs aiohttp. Prints per-minute counts by status, then a FINAL line."""
import asyncio, aiohttp, hmac, hashlib, json, os, random, sys, time, collections, base64
HOST, PORT = "127.0.0.1", int(os.environ.get("SOAK_PORT", "47710"))
BASE = f"http://{HOST}:{PORT}"
DUR = float(sys.argv[1]); RATE = float(sys.argv[2])
counts = collections.Counter(); errors = collections.Counter()
n = 0
def cs_sig(body): return hmac.new(b"demo-caresoft-secret", body, hashlib.sha1).hexdigest().upper()
BASIC = "Basic " + base64.b64encode(b"demo:demo-voipex-password").decode()
def valid(i):
    v = i % 5
    if v == 0:
        b = json.dumps({"account_id": 1, "ticket": {"ticket_id": i, "updated_at": "2026-12-01 10:00:00"}, "action": "update", "object": "ticket"}).encode()
        return "POST", "/hooks/caresoft/demo", {"X-Hub-Signature": cs_sig(b), "Content-Type": "application/json"}, b
    if v == 1:
        b = json.dumps({"call_id": f"t-{i}", "domain": "x.tel4vn.com", "direction": "inbound", "from_number": "0899888999", "to_number": "101", "state": random.choice(["ringing", "answer", "hangup", "cdr"]), "duration": 10, "billsec": 5}).encode()
        return "POST", "/hooks/tel4vn/demo", {"Authorization": "Bearer demo-tel4vn-key", "Content-Type": "application/json"}, b
    if v == 2:
        b = json.dumps({"device_id": "dev-w", "event_type": "incoming_call", "payload": {"call_id": i, "call_src": "+7982", "call_dst": "107", "trunk": "GSM1"}}).encode()
        return "POST", "/hooks/sprecord/demo?token=demo-sprecord-token", {"Content-Type": "application/json"}, b
    if v == 3:
        b = json.dumps({"EventName": random.choice(["Ringing", "Answered", "Hangup"]), "From": "777", "To": "222", "Line": "444", "Login": "petr", "UniqueId": f"{i}.1"}).encode()
        return "POST", "/hooks/voipex/demo", {"Authorization": BASIC, "Content-Type": "application/json"}, b
    b = json.dumps({"extend": 130, "state": "ring", "phone": "0832666859", "callid": f"{i}.299", "type": "inbound", "pad": "x" * random.randint(0, 2000)}).encode()
    return "POST", "/hooks/voip24h/demo?token=demo-voip24h-token", {"Content-Type": "application/json"}, b
def refused(i):
    k = i % 6
    if k == 0:  # wrong key
        return "POST", "/hooks/tel4vn/demo", {"Authorization": "Bearer nope"}, b'{"call_id":"x"}'
    if k == 1:  # bad signature (body read)
        return "POST", "/hooks/caresoft/demo", {"X-Hub-Signature": "00" * 20}, b'{"a":1}'
    if k == 2:  # bad JSON
        return "POST", "/hooks/voip24h/demo?token=demo-voip24h-token", {"Content-Type": "application/json"}, b'{"extend":'
    if k == 3:  # oversized (max_body 64KiB)
        return "POST", "/hooks/voipex/demo", {"Authorization": BASIC}, b"{" + b" " * 70000 + b"}"
    if k == 4:  # unknown account
        return "POST", f"/hooks/tel4vn/acct{random.randint(0,10**9)}", {}, b"{}"
    return "POST", "/hooks/caresoft/demo", {"X-Hub-Signature": "00" * 20}, b"{" + b" " * 70000 + b"}"  # oversized caresoft

async def send(sess, req, tag):
    m, path, h, b = req
    try:
        async with sess.request(m, BASE + path, headers=h, data=b) as r:
            await r.read(); counts[f"{tag}:{r.status}"] += 1
    except Exception as e:
        errors[f"{tag}:{type(e).__name__}"] += 1

async def raw_abort(kind):
    """Open a raw TCP connection, send a head + part of the body, then close (or stall)."""
    try:
        r, w = await asyncio.open_connection(HOST, PORT)
        body = json.dumps({"account_id": 1, "ticket": {"ticket_id": 1}, "action": "x", "object": "ticket"}).encode() * 50
        head = (f"POST /hooks/caresoft/demo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"X-Hub-Signature: {'AA' * 20}\r\nContent-Length: {len(body) + 10000}\r\n\r\n").encode()
        w.write(head + body[: len(body) // 2]); await w.drain()
        if kind == "stall":
            await asyncio.sleep(random.uniform(5, 40))   # may hit the 30 s body timeout
        else:
            await asyncio.sleep(random.uniform(0, 0.5))
        if kind == "rst":
            w.transport.abort()
        else:
            w.close()
        counts[f"raw:{kind}"] += 1
    except Exception as e:
        errors[f"raw:{type(e).__name__}"] += 1

async def report(t0):
    while True:
        await asyncio.sleep(60)
        print(time.strftime("%H:%M:%S"), f"t={time.time()-t0:.0f}", dict(sorted(counts.items())), dict(errors), flush=True)

async def main():
    global n
    t0 = time.time()
    conn = aiohttp.TCPConnector(limit=64, force_close=False)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=40)) as sess:
        asyncio.create_task(report(t0))
        tasks = set()
        tick = 0.05; per_tick = RATE * tick
        acc = 0.0
        while time.time() - t0 < DUR:
            acc += per_tick
            while acc >= 1:
                acc -= 1; n += 1
                if random.random() < 0.05 and n > 100:
                    req = valid(n - random.randint(1, 100))   # a retry: duplicate
                else:
                    req = valid(n)
                t = asyncio.create_task(send(sess, req, "ok")); tasks.add(t); t.add_done_callback(tasks.discard)
            if random.random() < 0.4:   # ~8 refused/s
                t = asyncio.create_task(send(sess, refused(random.randint(0, 10**6)), "bad")); tasks.add(t); t.add_done_callback(tasks.discard)
            if random.random() < 0.05:  # ~1/s raw abort
                t = asyncio.create_task(raw_abort(random.choice(["close", "rst", "stall", "close"]))); tasks.add(t); t.add_done_callback(tasks.discard)
            await asyncio.sleep(tick)
        await asyncio.gather(*tasks, return_exceptions=True)
    print("FINAL", dict(sorted(counts.items())), dict(errors), flush=True)

asyncio.run(main())
