#!/usr/bin/env python3
"""Owns the tansu broker and the relay for scripts/soak/kafka/run.sh and injects the faults.

Usage: supervise.py FAULT_DELAY_S FAULT_FOR_S
  Starts tansu (sqlite storage in $KSOAK_DIR/tansu), creates the topics, starts the relay
  ($KSOAK_DIR/relay.toml, log $KSOAK_DIR/relay/relay.log), then writes $KSOAK_DIR/supervisor.ready.
  After FAULT_DELAY_S it injects one fault every 15-45 s (KSOAK_FAULT_GAP_MIN/MAX) until
  FAULT_FOR_S have passed (a fault that has begun runs to its end), then makes sure the
  broker and the relay run with a valid config, writes $KSOAK_DIR/supervisor.calm and
  waits. SIGTERM/SIGINT: stops the relay (SIGCONT, SIGTERM, SIGKILL after 30 s) and the
  broker (SIGKILL), waits for both and exits. Every action goes to $KSOAK_DIR/timeline.log.

Faults: relay SIGKILL + restart; SIGTERM + restart; broker down 10-90 s (SIGKILL only:
tansu 0.6's sqlite storage can panic after a SIGTERM under produce load) then restarted on
the same storage; SIGHUP alternating cfg_a/cfg_b (they differ in [kafka.options], so the
Kafka sink restarts); SIGHUP with no change; SIGHUP with an invalid file (refused), then the
valid one back; SIGSTOP/SIGCONT of the relay for 2-8 s; and overlaps: broker down + relay
KILL inside, broker down + Kafka reload inside, broker down + relay TERM inside, Kafka
reload then KILL 1 s later. The first faults are every kind once in random order.

A watchdog (every 2 s) restarts a relay or broker that died without being told to (logged
as "RELAY died unexpectedly" / "BROKER died unexpectedly"), and repairs a tansu whose log
shows a new panic (relay KILL, broker KILL + restart, relay start: "HARNESS: tansu panicked").

Env: KSOAK_DIR, CALLRELAY_BIN, TANSU_BIN, KSOAK_PORT (relay), KSOAK_BROKER_PORT,
KSOAK_TOPICS (comma list of topics to create), KSOAK_PARTITIONS, KSOAK_SEED (random seed)."""
import json, os, random, re, shutil, signal, socket, subprocess, sys, threading, time, urllib.request

D = os.environ["KSOAK_DIR"]
RELAY_BIN = os.environ["CALLRELAY_BIN"]
TANSU = os.environ["TANSU_BIN"]
PORT = int(os.environ["KSOAK_PORT"])
BPORT = int(os.environ["KSOAK_BROKER_PORT"])
TOPICS = [t for t in os.environ.get("KSOAK_TOPICS", "").split(",") if t]
PARTITIONS = os.environ.get("KSOAK_PARTITIONS", "3")
GAP_MIN = float(os.environ.get("KSOAK_FAULT_GAP_MIN", "15"))
GAP_MAX = float(os.environ.get("KSOAK_FAULT_GAP_MAX", "45"))
if os.environ.get("KSOAK_SEED"):
    random.seed(int(os.environ["KSOAK_SEED"]))

class Stop(Exception):
    pass

stopping = threading.Event()
lock = threading.RLock()
tl_lock = threading.Lock()

def tl(msg):
    t = time.time()
    line = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ " % (int(t * 1000) % 1000) + msg
    with tl_lock, open(os.path.join(D, "timeline.log"), "a") as f:
        f.write(line + "\n")

def nap(s):
    if stopping.wait(s):
        raise Stop()

def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False

class Proc:
    def __init__(self, name):
        self.name, self.p, self.intended_down = name, None, True

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def pid(self):
        return self.p.pid if self.p else None

    def wait_exit(self, timeout):
        if self.p is None:
            return True
        try:
            rc = self.p.wait(timeout=timeout)
            tl(f"{self.name} exited pid={self.p.pid} rc={rc}")
            return True
        except subprocess.TimeoutExpired:
            return False

relay, broker = Proc("RELAY"), Proc("BROKER")

def tansu_start():
    with lock:
        log = open(os.path.join(D, "tansu", "tansu.log"), "a")
        env = dict(os.environ, RUST_LOG=os.environ.get("KSOAK_TANSU_LOG", "warn"))
        broker.p = subprocess.Popen(
            [TANSU, "broker", "--listener-url", f"tcp://127.0.0.1:{BPORT}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{BPORT}", "--storage-engine", "sqlite://tansu.db"],
            cwd=os.path.join(D, "tansu"), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True)
        log.close()
        broker.intended_down = False
        open(os.path.join(D, "tansu.pid"), "w").write(f"{broker.p.pid}\n")
        tl(f"BROKER start pid={broker.p.pid}")
    for _ in range(150):
        if port_open(BPORT):
            tl("BROKER listening"); return True
        if not broker.alive():
            break
        time.sleep(0.1)
    tl("BROKER not listening after 15 s")
    return False

def tansu_kill():
    with lock:
        broker.intended_down = True
        if broker.alive():
            broker.p.kill(); tl(f"BROKER stop sig=KILL pid={broker.p.pid}")
    broker.wait_exit(30)

def relay_start():
    with lock:
        log = open(os.path.join(D, "relay", "relay.log"), "a")
        relay.p = subprocess.Popen([RELAY_BIN, "run", "--config", os.path.join(D, "relay.toml"), "--log-format", "json"],
                                   cwd=os.path.join(D, "relay"), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        relay.intended_down = False
        open(os.path.join(D, "relay.pid"), "w").write(f"{relay.p.pid}\n")
        tl(f"RELAY start pid={relay.p.pid}")

def relay_sig(sig):
    with lock:
        if sig in ("KILL", "TERM"):
            relay.intended_down = True
        if not relay.alive():
            tl(f"RELAY signal {sig}: not running"); return
        relay.p.send_signal(getattr(signal, "SIG" + sig)); tl(f"RELAY signal {sig} pid={relay.p.pid}")
        if sig == "TERM":  # a stopped process would not act on it
            relay.p.send_signal(signal.SIGCONT)

# ---- faults -------------------------------------------------------------------------
cur = {"cfg": "a"}
counts = {}

def setcfg(v):
    shutil.copy(os.path.join(D, f"cfg_{v}.toml"), os.path.join(D, "relay.toml")); tl(f"CONFIG relay.toml := cfg_{v}")

def other():
    return "b" if cur["cfg"] == "a" else "a"

def kill9():
    relay_sig("KILL"); relay.wait_exit(30); nap(random.uniform(0.5, 5)); relay_start()

def term():
    relay_sig("TERM")
    if not relay.wait_exit(30):
        tl("RELAY did not exit within 30 s of SIGTERM: KILL")
        relay_sig("KILL"); relay.wait_exit(30)
    nap(random.uniform(0.5, 3)); relay_start()

def broker_down():
    d = random.uniform(10, 90)
    tl(f"FAULT broker down {d:.0f}s"); tansu_kill(); nap(d); tansu_start()

def reload_kafka():
    n = other(); setcfg(n); cur["cfg"] = n; relay_sig("HUP")

def reload_same():
    tl("reload: no change"); relay_sig("HUP")

def reload_invalid():
    setcfg("invalid"); relay_sig("HUP")
    try:
        nap(2)
    finally:
        setcfg(cur["cfg"])

def pause():
    d = random.uniform(2, 8); relay_sig("STOP")
    try:
        nap(d)
    finally:
        relay_sig("CONT")

def overlap_kill():
    d = random.uniform(30, 60)
    tl(f"FAULT overlap: broker down {d:.0f}s + relay KILL inside"); tansu_kill()
    nap(d * 0.3); relay_sig("KILL"); relay.wait_exit(30); nap(3); relay_start()
    nap(d * 0.7); tansu_start()

def overlap_reload():
    d = random.uniform(25, 60)
    tl(f"FAULT overlap: broker down {d:.0f}s + kafka reload inside"); tansu_kill()
    nap(d * 0.4); reload_kafka(); nap(d * 0.6); tansu_start()

def overlap_term():
    d = random.uniform(20, 40)
    tl(f"FAULT overlap: broker down {d:.0f}s + relay TERM inside"); tansu_kill()
    nap(d * 0.3); term(); nap(d * 0.7); tansu_start()

def kill_after_reload():
    tl("FAULT overlap: kafka reload then KILL 1s later"); reload_kafka(); nap(1); kill9()

F = {"kill9": kill9, "term": term, "broker": broker_down, "reload_kafka": reload_kafka, "reload_same": reload_same,
     "reload_invalid": reload_invalid, "pause": pause, "overlap_kill": overlap_kill, "overlap_reload": overlap_reload,
     "overlap_term": overlap_term, "kill_after_reload": kill_after_reload}
W = {"kill9": 5, "term": 3, "broker": 3, "reload_kafka": 3, "reload_same": 2, "reload_invalid": 2, "pause": 3,
     "overlap_kill": 2, "overlap_reload": 2, "overlap_term": 1, "kill_after_reload": 1}

# ---- watchdog -----------------------------------------------------------------------
def relay_bind_failed():
    """The relay's last lines say its port was taken (by a client socket's ephemeral port,
    say): a harness problem, not the relay's."""
    try:
        with open(os.path.join(D, "relay", "relay.log"), "rb") as f:
            f.seek(0, 2); f.seek(max(0, f.tell() - 2048))
            return b"Address already in use" in f.read()
    except OSError:
        return False

ANSI = re.compile(r"\x1b\[[0-9;]*m")

def tansu_panics():
    try:
        with open(os.path.join(D, "tansu", "tansu.log"), errors="replace") as f:
            return sum(1 for l in f if "panicked" in ANSI.sub("", l))
    except OSError:
        return 0

def watchdog():
    base = tansu_panics()
    while not stopping.wait(2):
        with lock:
            if stopping.is_set():
                return
            n = tansu_panics()
            if n != base:
                tl(f"HARNESS: tansu panicked (log count {n}): repair = relay KILL + broker KILL/restart + relay start")
                relay_sig("KILL"); relay.wait_exit(30); tansu_kill(); tansu_start(); time.sleep(1); relay_start()
                base = tansu_panics()
                continue
            if not broker.intended_down and not broker.alive():
                tl(f"BROKER died unexpectedly rc={broker.p.returncode}: restarting"); tansu_start()
            if not relay.intended_down and not relay.alive():
                if relay_bind_failed():
                    tl(f"HARNESS: the relay could not listen (port {PORT} taken by another socket): restarting it")
                    time.sleep(1)
                else:
                    tl(f"RELAY died unexpectedly rc={relay.p.returncode}: restarting")
                relay_start()

# ---- main ---------------------------------------------------------------------------
def shutdown():
    stopping.set()
    with lock:
        relay.intended_down = broker.intended_down = True
        if relay.alive():
            relay.p.send_signal(signal.SIGCONT)
            relay.p.terminate(); tl(f"SHUTDOWN: RELAY signal TERM pid={relay.p.pid}")
            if not relay.wait_exit(30):
                tl("SHUTDOWN: RELAY did not exit within 30 s of SIGTERM: KILL")
                relay.p.kill(); relay.wait_exit(10)
        if broker.alive():
            broker.p.kill(); tl(f"SHUTDOWN: BROKER stop sig=KILL pid={broker.p.pid}"); broker.wait_exit(10)
    tl("SHUTDOWN done")

def status_ok():
    try:
        s = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{PORT}/status", timeout=1).read())
        return "kafka" in s.get("sinks", {})
    except Exception:
        return False

def main():
    delay, dur = float(sys.argv[1]), float(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        if not tansu_start():
            print("supervise: the broker does not listen (see tansu/tansu.log)", flush=True); return 2
        for t in TOPICS:
            r = subprocess.run([TANSU, "topic", "create", t, "--partitions", PARTITIONS, "--broker", f"tcp://127.0.0.1:{BPORT}"],
                               capture_output=True, text=True, timeout=60)
            tl(f"TOPIC create {t} partitions={PARTITIONS} rc={r.returncode} {(r.stdout + r.stderr).strip()[:200]}")
            if r.returncode != 0:
                print(f"supervise: cannot create topic {t}: {r.stdout}{r.stderr}", flush=True); return 2
        setcfg("a"); relay_start()
        tries = 0
        for _ in range(300):
            if status_ok():
                break
            if not relay.alive():
                tries += 1
                if relay_bind_failed() and tries < 10:
                    tl(f"HARNESS: the relay could not listen (port {PORT} taken by another socket): restarting it")
                    nap(1); relay_start(); continue
                print("supervise: the relay exited at start (see relay/relay.log)", flush=True); return 2
            nap(0.1)
        else:
            print(f"supervise: the relay's /status does not answer on port {PORT}", flush=True); return 2
        open(os.path.join(D, "supervisor.ready"), "w").write("ready\n")
        threading.Thread(target=watchdog, daemon=True).start()
        end = time.time() + delay + dur
        tl(f"FAULTS start in {delay:.0f}s, for {dur:.0f}s")
        nap(delay)
        plan = list(F); random.shuffle(plan)
        while time.time() < end:
            name = plan.pop(0) if plan else random.choices(list(W), weights=list(W.values()))[0]
            counts[name] = counts.get(name, 0) + 1
            tl(f"== FAULT {name} begin"); F[name](); tl(f"== FAULT {name} end")
            nap(min(random.uniform(GAP_MIN, GAP_MAX), max(0.0, end - time.time())))
        with lock:  # everything up, a valid config in place
            setcfg(cur["cfg"])
            if not broker.alive():
                tansu_start()
            if relay.alive():
                relay.p.send_signal(signal.SIGCONT)
            else:
                relay_start()
        tl(f"FAULTS over: {json.dumps(counts)}")
        open(os.path.join(D, "supervisor.calm"), "w").write(json.dumps(counts) + "\n")
        stopping.wait()
    except Stop:
        tl("STOP requested during a fault")
    finally:
        shutdown()
    return 0

if __name__ == "__main__":
    sys.exit(main())
