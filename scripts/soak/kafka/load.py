#!/usr/bin/env python3
"""Webhook load for scripts/soak/kafka/run.sh: per-call sequences to the five vendors.

Usage: load.py DURATION_S RATE
  WORKERS (KSOAK_WORKERS, default 48) each take the next number n, pick the vendor n % 5
  and post that call's steps in order (tel4vn ringing/answered/hangup/cdr, voipex
  Ringing/Answered/Hangup, voip24h ring/up/hangup, sprecord incoming_call/start_talk/
  call_end, caresoft three updates of one ticket), 20-300 ms apart. Each step is retried
  (0.5-1.5 s apart) until the relay answers 200, for at most 120 s; after that the step is
  recorded as given up and the rest of that call is skipped. All attempts share one token
  bucket of RATE requests/s. No new call starts after DURATION_S; calls under way finish.
  SIGTERM/SIGINT: stop at once.

Every attempt is one JSON line in $KSOAK_DIR/sent.jsonl: t, t_end, vendor, key, step,
name, att and either status (+ id, seq, dup when 200, body otherwise) or err; a step given
up is {"gave_up": true, ...}. The last line on stdout is "FINAL calls=N attempts=N ok=N".

Env: KSOAK_DIR, KSOAK_PORT (the relay), KSOAK_RUN (key prefix, default r1), KSOAK_WORKERS."""
import asyncio, base64, hashlib, hmac, json, os, random, signal, sys, time

import aiohttp

D = os.environ["KSOAK_DIR"]
BASE = "http://127.0.0.1:%s" % os.environ["KSOAK_PORT"]
DUR, RATE = float(sys.argv[1]), float(sys.argv[2])
WORKERS = int(os.environ.get("KSOAK_WORKERS", "48"))
RUN = os.environ.get("KSOAK_RUN", "r1")
STEP_GIVE_UP_S = 120
out = open(os.path.join(D, "sent.jsonl"), "a", buffering=1)
BASIC = "Basic " + base64.b64encode(b"demo:demo-voipex-password").decode()

def cs_sig(b):
    return hmac.new(b"demo-caresoft-secret", b, hashlib.sha1).hexdigest().upper()

def seq_for(vendor, n):
    """(Kafka key the relay will use, [(step name, path, headers, body object)])"""
    if vendor == "tel4vn":
        k = f"{RUN}-t-{n}"
        return k, [(s, "/hooks/tel4vn/demo", {"Authorization": "Bearer demo-tel4vn-key"},
                    {"call_id": k, "domain": "x", "direction": "inbound", "from_number": "0899", "to_number": "101",
                     "state": s, "duration": 10, "billsec": 5})
                   for s in ["ringing", "answered", "hangup", "cdr"]]
    if vendor == "voipex":
        k = f"{RUN}.{n}"
        return k, [(s, "/hooks/voipex/demo", {"Authorization": BASIC},
                    {"EventName": s, "From": "777", "To": "222", "Line": "444", "Login": "petr", "UniqueId": k})
                   for s in ["Ringing", "Answered", "Hangup"]]
    if vendor == "voip24h":
        k = f"{RUN}v{n}.299"
        return k, [(s, "/hooks/voip24h/demo?token=demo-voip24h-token", {},
                    {"extend": 130, "state": s, "phone": "0832", "callid": k, "type": "inbound"})
                   for s in ["ring", "up", "hangup"]]
    if vendor == "sprecord":
        cid = 7000000000 + n
        return str(cid), [(s, "/hooks/sprecord/demo?token=demo-sprecord-token", {},
                           {"device_id": f"dev-{RUN}", "event_type": s,
                            "payload": {"call_id": cid, "call_src": "+7982", "call_dst": "107", "status": "answered",
                                        "duration": 5}})
                          for s in ["incoming_call", "start_talk", "call_end"]]
    tid = 900000000 + n
    return str(tid), [(f"v{v}", "/hooks/caresoft/demo", "CS",
                       {"account_id": 1, "ticket": {"ticket_id": tid, "updated_at": f"2026-12-01 10:00:0{v}"},
                        "action": "update", "object": "ticket"})
                      for v in range(1, 4)]

VENDORS = ["tel4vn", "voipex", "voip24h", "sprecord", "caresoft"]
tokens = 0.0
counter = attempts = oks = 0
stop_at = 0.0

async def bucket():
    global tokens
    while True:
        await asyncio.sleep(0.02)
        tokens = min(tokens + RATE * 0.02, RATE)

async def take():
    global tokens
    while tokens < 1:
        await asyncio.sleep(0.005)
    tokens -= 1

async def worker(sess):
    global counter, attempts, oks
    while time.time() < stop_at:
        counter += 1
        n = counter
        vendor = VENDORS[n % 5]
        key, steps = seq_for(vendor, n)
        for i, (name, path, hdr, obj) in enumerate(steps):
            body = json.dumps(obj).encode()
            h = {"Content-Type": "application/json"}
            if hdr == "CS":
                h["X-Hub-Signature"] = cs_sig(body)
            else:
                h.update(hdr)
            t_first = time.time(); att = 0; ok = False
            while time.time() - t_first < STEP_GIVE_UP_S:
                att += 1; attempts += 1
                await take()
                rec = {"t": round(time.time(), 3), "vendor": vendor, "key": key, "step": i, "name": name, "att": att}
                try:
                    async with sess.post(BASE + path, headers=h, data=body) as r:
                        txt = await r.text()
                        rec["status"] = r.status
                        if r.status == 200:
                            j = json.loads(txt)
                            rec.update(id=j["id"], seq=j["seq"], dup=j["duplicate"]); ok = True
                        else:
                            rec["body"] = txt[:200]
                except Exception as e:
                    rec["err"] = type(e).__name__ + ":" + str(e)[:100]
                rec["t_end"] = round(time.time(), 3)
                out.write(json.dumps(rec) + "\n")
                if ok:
                    oks += 1
                    break
                await asyncio.sleep(0.5 + random.random())
            if not ok:
                out.write(json.dumps({"t": round(time.time(), 3), "vendor": vendor, "key": key, "step": i,
                                      "name": name, "gave_up": True}) + "\n")
                break
            await asyncio.sleep(random.uniform(0.02, 0.3))

async def main():
    global stop_at
    stop_at = time.time() + DUR
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, done.set)
    asyncio.create_task(bucket())
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=WORKERS),
                                     timeout=aiohttp.ClientTimeout(total=15)) as s:
        work = asyncio.gather(*[worker(s) for _ in range(WORKERS)])
        stopper = asyncio.create_task(done.wait())
        await asyncio.wait([work, stopper], return_when=asyncio.FIRST_COMPLETED)
        if done.is_set():
            work.cancel()
            print("load: stopped by signal", flush=True)
    print(f"FINAL calls={counter} attempts={attempts} ok={oks}", flush=True)

asyncio.run(main())
