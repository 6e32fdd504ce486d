#!/usr/bin/env python3
"""Runs the repository's Voip24h (socket.io 4, tests/peers/voip24h/peer.js) and SPRecord
(SSE, tests/peers/sprecord/server.js) stand-ins on fixed ports until SIGTERM/SIGINT.

While $SOAK_DIR/phase reads "load": feeds SPRecord ~20 events/s, has the Voip24h peer
stream 20 call events/s, and kills/restarts each peer every ~60-120 s (down 2-8 s).
In any other phase the peers stay up and quiet (Voip24h still sends its `say`
keep-alives), so the relay's source connections match before and after the load.

Env: SOAK_DIR (work dir: logs, phase file, peers.pids), SOAK_REPO (repository root),
SOAK_VOIP24H_PORT (default 47720), SOAK_SPRECORD_PORT (default 47721).
Usage: peers.py"""
import json, os, random, signal, subprocess, sys, time, urllib.request

D = os.environ["SOAK_DIR"]
REPO = os.environ.get("SOAK_REPO") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
V_PORT = int(os.environ.get("SOAK_VOIP24H_PORT", "47720"))
S_PORT = int(os.environ.get("SOAK_SPRECORD_PORT", "47721"))
V_DIR = os.path.join(REPO, "tests", "peers", "voip24h")
S_DIR = os.path.join(REPO, "tests", "peers", "sprecord")

stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, on_term)

def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)

def phase():
    try:
        with open(os.path.join(D, "phase")) as f:
            return f.read().strip()
    except OSError:
        return ""

def v_cmd(p, obj):
    try:
        p.stdin.write(json.dumps(obj) + "\n"); p.stdin.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass

def start_v():
    # stdin stays open: the peer exits when it closes (and reads commands from it).
    return subprocess.Popen(["node", os.path.join(V_DIR, "peer.js"), "--sio", "4", "--key", "leak-key",
                             "--secret", "s3cret", "--say-ms", "2000", "--hello-timeout-ms", "30000",
                             "--port", str(V_PORT)],
                            stdin=subprocess.PIPE, stdout=open(os.path.join(D, "peer-voip24h.out"), "a"),
                            stderr=subprocess.STDOUT, text=True)

def start_s():
    env = dict(os.environ, PEER_PORT=str(S_PORT), SPRECORD_PEER_KEEPALIVE_MS="2000")
    return subprocess.Popen(["node", "server.js"], cwd=S_DIR, env=env, stdin=subprocess.PIPE,
                            stdout=open(os.path.join(D, "peer-sprecord.out"), "a"),
                            stderr=subprocess.STDOUT, text=True)

procs = {}
def write_pids():
    with open(os.path.join(D, "peers.pids"), "w") as f:
        f.write(" ".join(str(p.pid) for p in procs.values()) + "\n")

procs["v"] = start_v(); procs["s"] = start_s(); write_pids()
streaming = False          # Voip24h peer told to stream
stream_at = time.time() + 1  # the peer needs a moment to listen before the command
nextkill = {}
restarts = {"v": 0, "s": 0}
t0 = time.time(); n = 0
log("peers up", {"voip24h": V_PORT, "sprecord": S_PORT})
while not stop:
    loading = phase() == "load"
    for k, p in procs.items():          # a peer that died by itself comes back
        if p.poll() is not None:
            log("peer", k, "exited", p.returncode, "- restarting")
            procs[k] = start_v() if k == "v" else start_s(); write_pids()
            if k == "v":
                streaming = False; stream_at = time.time() + 1
    if loading:
        if not nextkill:
            nextkill = {k: time.time() + random.uniform(60, 120) for k in ("v", "s")}
            log("load: feeding events, restarting peers every 60-120 s")
        if not streaming and time.time() >= stream_at:
            v_cmd(procs["v"], {"cmd": "stream", "every_ms": 100, "per_tick": 2}); streaming = True
        evs = []
        for _ in range(4):                     # sprecord: 4 events per 0.2 s
            n += 1
            kind = ["incoming_call", "start_talk", "answer_elsewhere", "call_end"][n % 4]
            evs.append({"device_id": "dev-1", "event_type": kind,
                        "payload": {"call_id": f"s{t0:.0f}-{n // 4}", "call_dst": "107"}})
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{S_PORT}/control/send",
                                         data=json.dumps({"events": evs}).encode(),
                                         headers={"content-type": "application/json"})
            urllib.request.urlopen(req, timeout=2).read()
        except Exception:
            pass
        for k in ("v", "s"):
            if not stop and time.time() > nextkill[k]:
                procs[k].kill(); procs[k].wait()
                time.sleep(random.uniform(2, 8))   # down for a few seconds
                procs[k] = start_v() if k == "v" else start_s()
                if k == "v":
                    streaming = False; stream_at = time.time() + 1
                restarts[k] += 1
                log("restarted", k, restarts)
                write_pids()
                nextkill[k] = time.time() + random.uniform(60, 120)
    else:
        if nextkill:
            log("load over: peers stay up, quiet", restarts)
            nextkill = {}
        if streaming:
            v_cmd(procs["v"], {"cmd": "stream_stop"}); streaming = False
    time.sleep(0.2)

for p in procs.values():
    try:
        p.stdin.close()
    except OSError:
        pass
    try:
        p.wait(timeout=3)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
log("peers done", restarts)
