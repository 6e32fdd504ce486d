#!/usr/bin/env python3
"""Voip24h session rate: a burst of N `response`s from the socket.io test peer
(tests/peers/voip24h/peer.js; its npm packages come with the test suite) into
a release relay; prints how fast the one session journals them (the
`response`s that have arrived, up to 256, per journal commit, in order).

Usage: scripts/perf/voip24h_burst.py 2|4 N   (after `cargo build --release`)
Not part of the test suite; docs/PERFORMANCE.md quotes its output.
"""
import json, os, shutil, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORK = tempfile.mkdtemp(prefix="voip24h-burst-")
sio = sys.argv[1]; n = int(sys.argv[2])
peer = subprocess.Popen(["node", os.path.join(ROOT, "tests/peers/voip24h/peer.js"), "--sio", sio, "--key", "k-rate", "--hello-timeout-ms", "600000"],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
def expect(ev):
    while True:
        line = peer.stdout.readline()
        if not line: raise SystemExit("peer ended")
        m = json.loads(line)
        if m.get("ev") == ev: return m
port = expect("listening")["port"]
d = os.path.join(WORK, "journal")
open(os.path.join(WORK, "relay.toml"), "w").write(f'''[server]
listen = "127.0.0.1:18311"
[journal]
path = "{d}"
[[voip24h]]
account = "main"
url = "http://127.0.0.1:{port}"
key = "k-rate"
engine_io = "{'3' if sio=='2' else '4'}"
''')
relay = subprocess.Popen([os.path.join(ROOT, "target/release/callrelay"), "run", "--config", os.path.join(WORK, "relay.toml"), "--log-level", "warn"])
try:
    expect("signed")
    def seq():
        s = json.load(urllib.request.urlopen("http://127.0.0.1:18311/status"))
        return s["journal"]["last_seq"]
    args = [[{"extend":130,"state":"Ring","phone":"0832666859","callid":f"r.{i}","type":"inbound"}] for i in range(n)]
    t0 = time.time()
    peer.stdin.write(json.dumps({"cmd":"burst","event":"response","args_list":args})+"\n"); peer.stdin.flush()
    expect("burst_sent")
    while seq() < n: time.sleep(0.05)
    dt = time.time()-t0
    print(f"socket.io {sio}: {n} events journaled in {dt:.2f}s = {n/dt:.0f}/s")
    peer.stdin.write(json.dumps({"cmd":"stats"})+"\n"); peer.stdin.flush(); print(expect("stats"))
finally:
    relay.terminate(); relay.wait(); peer.kill(); shutil.rmtree(WORK, ignore_errors=True)
