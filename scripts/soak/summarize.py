#!/usr/bin/env python3
"""Summarises a soak run from SOAK_DIR/samples.csv, relay.log and reload.log.
Usage: summarize.py SOAK_DIR [--relay-died]
Exit 1 if, after the idle phase: fds > baseline + 5, threads > baseline + 4, the ws
clients gauge or the webhook body-bytes gauge is not 0; or any panic is logged, or the
relay died before run.sh stopped it, or there is no baseline/idle sample."""
import csv, os, re, sys

FD_SLACK, THREAD_SLACK = 5, 4

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None

def mb(kb):
    return "n/a" if kb is None else f"{kb / 1024:.1f}"

def fmt(v):
    return "n/a" if v is None else f"{v:g}"

def main():
    d = sys.argv[1]
    relay_died = "--relay-died" in sys.argv[2:]
    with open(os.path.join(d, "samples.csv")) as f:
        rows = list(csv.DictReader(f))
    by = {p: [r for r in rows if r["phase"] == p] for p in ("baseline", "load", "drain", "idle")}
    fails = []
    print(f"samples: {len(rows)} (baseline {len(by['baseline'])}, load {len(by['load'])}, "
          f"drain {len(by['drain'])}, idle {len(by['idle'])})")
    if not by["baseline"] or not by["idle"]:
        fails.append("no baseline or no idle sample")
    base = by["baseline"][-1] if by["baseline"] else (rows[0] if rows else {})
    idle = by["idle"][-1] if by["idle"] else (rows[-1] if rows else {})
    col = lambda rs, c: [num(r.get(c)) for r in rs]
    def top(c):
        xs = [x for x in col(rows, c) if x is not None]
        return max(xs) if xs else None

    load_rss = col(by["load"], "rss_kb")
    h = len(load_rss) // 2
    print(f"RSS MB: start {mb(num(rows[0]['rss_kb']) if rows else None)}  max {mb(top('rss_kb'))}"
          f" (VmHWM {mb(top('hwm_kb'))})  mean under load {mb(mean(load_rss))}"
          f"  load 1st half {mb(mean(load_rss[:h]))} / 2nd half {mb(mean(load_rss[h:]))}"
          f"  after idle {mb(num(idle.get('rss_kb')))}")

    for c, slack, name in (("fds", FD_SLACK, "fds"), ("threads", THREAD_SLACK, "threads")):
        b, e = num(base.get(c)), num(idle.get(c))
        ok = b is not None and e is not None and e <= b + slack
        print(f"{name}: baseline {fmt(b)}  max {fmt(top(c))}  after idle {fmt(e)}"
              f"  [{'ok' if ok else 'FAIL'}: limit baseline+{slack}]")
        if not ok:
            fails.append(f"{name} after idle {fmt(e)} > baseline {fmt(b)} + {slack}")

    for c, name in (("ws_clients_gauge", "ws clients gauge"), ("body_bytes_gauge", "webhook body-bytes gauge")):
        v = num(idle.get(c))
        ok = v == 0
        print(f"{name} after idle: {fmt(v)}  [{'ok' if ok else 'FAIL'}]")
        if not ok:
            fails.append(f"{name} after idle is {fmt(v)}, not 0")
    print(f"ws clients (/status) after idle: {fmt(num(idle.get('ws_clients_status')))}"
          f"  established TCP on relay port after idle: {fmt(num(idle.get('tcp_est')))}"
          f"  sources connected: baseline {fmt(num(base.get('sources_connected')))}"
          f" / after idle {fmt(num(idle.get('sources_connected')))}")
    jf = top("journal_file_bytes")
    print(f"journal: file size max {mb(jf / 1024 if jf is not None else None)} MB"
          f"  last_seq at end {fmt(num(idle.get('last_seq')))}")

    panics = errors = applied = refused = 0
    try:
        with open(os.path.join(d, "relay.log"), errors="replace") as f:
            for line in f:
                if "panicked" in line:
                    panics += 1
                is_error = '"level":"ERROR"' in line or re.search(r"\bERROR\b", line)
                if '"config reloaded"' in line:
                    applied += 1
                if "new config is refused" in line:
                    refused += 1          # logged at ERROR: expected, once per invalid.toml
                elif is_error:
                    errors += 1
    except OSError:
        fails.append("no relay.log")
    sent = 0
    try:
        with open(os.path.join(d, "reload.log")) as f:
            sent = sum(1 for line in f if " reload " in line)
    except OSError:
        pass
    print(f"relay log: {panics} panic(s), {errors + refused} ERROR line(s)"
          f" ({refused} of them the expected refused reload(s), {errors} other)")
    print(f"reloads: {sent} SIGHUP sent, {applied} applied, {refused} refused")
    if panics:
        fails.append(f"{panics} panic(s) in relay.log")
    if relay_died:
        fails.append("the relay exited before the soak stopped it")
    if fails:
        print("RESULT: FAIL -", "; ".join(fails))
        return 1
    print("RESULT: PASS")
    return 0

if __name__ == "__main__":
    sys.exit(main())
