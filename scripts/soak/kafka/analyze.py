#!/usr/bin/env python3
"""Checks a scripts/soak/kafka/run.sh run: what the relay answered 200 against what Kafka holds.

Usage: analyze.py KSOAK_DIR [--lag-not-drained] [--dump]
Reads KSOAK_DIR/sent.jsonl (load.py), KSOAK_DIR/tansu/tansu.db (the broker's sqlite storage,
read directly: the broker must be stopped), timeline.log, relay/relay.log, tansu/tansu.log.
--dump also writes every Kafka record as one JSON line to KSOAK_DIR/kafka.jsonl.

Counts:
  loss          events answered 200 (their id) that are in no topic
  duplicates    ce_ids with more than one record (split: same seq = sent twice, different
                seq = journaled twice)
  order         per (topic, partition, key), among the first copies of each ce_id, a seq lower
                than one before it; and per call, the load's steps out of the order it sent them
  unanswered    webhook events in Kafka whose every attempt failed at the client (timeouts,
                a relay killed before answering): allowed, the vendor retries
  missing seqs  journal seqs 1..max with no record (connection-source events included)
  read-back     from the relay log: events the Kafka sink skipped at a resume because it found
                them in the topic already, and read-backs that failed or hit their bound
Exit 1 on any loss, duplicate, order violation, relay panic, relay death no one asked for, or a
200 answer whose id/seq changed between attempts; 2 on a harness problem (missing or empty
input, tansu panicked — the broker's storage then cannot be trusted); else 0."""
import bisect, collections, datetime, json, os, re, sqlite3, sys

def hms(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

def harness(msg):
    print("analyze: HARNESS PROBLEM: " + msg)
    sys.exit(2)

def main():
    if len(sys.argv) < 2:
        harness("usage: analyze.py KSOAK_DIR [--lag-not-drained] [--dump]")
    D = sys.argv[1]
    flags = sys.argv[2:]
    p = lambda *a: os.path.join(D, *a)
    for f in ("sent.jsonl", "timeline.log", "tansu/tansu.db"):
        if not os.path.exists(p(f)):
            harness(f"{p(f)} is missing")

    # ---- timeline ----------------------------------------------------------------------
    TL = []
    for l in open(p("timeline.log")):
        ts, _, msg = l.rstrip("\n").partition(" ")
        TL.append((ts, msg))
    TLK = [x[0] for x in TL]
    def near(t):
        i = bisect.bisect_right(TLK, hms(t))
        return [f"{a} {b}" for a, b in TL[max(0, i - 3):i + 1]]
    faults = collections.Counter(m.split()[2] for _, m in TL if m.startswith("== FAULT ") and m.endswith(" begin"))
    relay_died = [f"{a} {b}" for a, b in TL if b.startswith("RELAY died unexpectedly")]
    broker_died = [f"{a} {b}" for a, b in TL if b.startswith("BROKER died unexpectedly")]
    term_stuck = [f"{a} {b}" for a, b in TL if "did not exit within" in b]
    tansu_repairs = [f"{a} {b}" for a, b in TL if b.startswith("HARNESS: tansu panicked")]
    bind_retries = [f"{a} {b}" for a, b in TL if b.startswith("HARNESS: the relay could not listen")]

    # ---- what the load sent --------------------------------------------------------------
    sent = collections.defaultdict(list)
    for l in open(p("sent.jsonl")):
        try:
            r = json.loads(l)
        except ValueError:
            continue  # a line cut by a kill
        sent[(r["vendor"], r["key"], r["step"])].append(r)
    if not sent:
        harness("sent.jsonl is empty: the load sent nothing")
    ans = {}
    outcomes = collections.Counter(); gave_up = 0; inconsistent = []; attempts = 0; first_dup = 0
    for k, atts in sent.items():
        for a in atts:
            if a.get("gave_up"):
                gave_up += 1; continue
            attempts += 1
            outcomes[str(a.get("status") or a.get("err", "?").split(":")[0])] += 1
        ok = [a for a in atts if a.get("status") == 200]
        if ok:
            ids = {a["id"] for a in ok}; seqs = {a["seq"] for a in ok}
            if len(ids) > 1 or len(seqs) > 1:
                inconsistent.append((k, ids, seqs))
            if ok[0]["dup"]:
                first_dup += 1
            ans[ok[0]["id"]] = dict(key=k, t=ok[0]["t"], seq=ok[0]["seq"])

    # ---- what Kafka holds (tansu's sqlite tables, read directly) -------------------------
    try:
        db = sqlite3.connect(p("tansu/tansu.db"))
        tp = {tid: (name, part) for tid, name, part in db.execute(
            "select topition.id, topic.name, topition.partition from topition join topic on topic.id = topition.topic")}
        ce = {}
        for t, o, v in db.execute("select topition, offset_id, v from header where cast(k as text) = 'ce_id'"):
            ce[(t, o)] = v.decode() if isinstance(v, bytes) else v
        K = []
        for t, o, ts, k, v in db.execute("select topition, offset_id, timestamp, k, v from record order by topition, offset_id"):
            ev = json.loads(v)
            K.append({"topic": tp.get(t, ("?", -1))[0], "p": tp.get(t, ("?", -1))[1], "o": o,
                      "key": k.decode() if isinstance(k, bytes) else k, "id": ev.get("id"), "seq": ev.get("seq"),
                      "type": ev.get("type"), "subject": ev.get("subject"), "source": ev.get("source"),
                      "ce_id": ce.get((t, o)), "ts": ts})
    except (sqlite3.Error, ValueError) as e:
        harness(f"cannot read the broker's storage {p('tansu/tansu.db')}: {e}")
    if "--dump" in flags:
        with open(p("kafka.jsonl"), "w") as f:
            for r in K:
                f.write(json.dumps(r) + "\n")
    if not K:
        harness("no record in Kafka at all")
    by_id = collections.defaultdict(list)
    for r in K:
        by_id[r["ce_id"] or r["id"]].append(r)
    hdr_mismatch = sum(1 for r in K if r["ce_id"] != r["id"])

    lost = [i for i in ans if i not in by_id]
    dups = {i: rs for i, rs in by_id.items() if len(rs) > 1}
    journaled_twice = {i for i, rs in dups.items() if len({r["seq"] for r in rs}) > 1}
    extra = sum(len(rs) - 1 for rs in dups.values())

    part = collections.defaultdict(list)
    for r in K:
        part[(r["topic"], r["p"])].append(r)
    seq_viol = []; key_steps = collections.defaultdict(list)
    for tpk, rs in part.items():
        rs.sort(key=lambda r: r["o"])
        seen = set(); last = {}
        for r in rs:
            i = r["ce_id"] or r["id"]
            if i in seen:
                continue
            seen.add(i)
            if r["key"] in last and r["seq"] < last[r["key"]]:
                seq_viol.append((tpk, r["key"], last[r["key"]], r["seq"], r["type"]))
            last[r["key"]] = max(last.get(r["key"], 0), r["seq"])
            if i in ans:
                key_steps[(tpk, r["key"])].append(ans[i]["key"][2])
    step_viol = [(k, st) for k, st in key_steps.items() if st != sorted(st)]

    web_sources = {"/%s/demo" % v for v in ("tel4vn", "voipex", "voip24h", "sprecord", "caresoft")}
    unanswered = [i for i, rs in by_id.items() if rs[0]["source"] in web_sources and i not in ans]
    seqs = {r["seq"] for r in K if isinstance(r["seq"], int)}
    mx = max(seqs) if seqs else 0
    missing = [s for s in range(1, mx + 1) if s not in seqs]
    by_source = collections.Counter(rs[0]["source"] for rs in by_id.values())

    # ---- the relay's and the broker's logs -------------------------------------------------
    panics = 0; skipped = 0; readbacks = 0; rb_warn = []; errors = collections.Counter(); starts = 0
    try:
        for l in open(p("relay", "relay.log"), errors="replace"):
            if "panicked" in l:
                panics += 1
            try:
                r = json.loads(l)
            except ValueError:
                continue
            m = r.get("message", "")
            if m.startswith("kafka sink: read-back done"):
                readbacks += 1; skipped += int(r.get("already_in_kafka") or 0)
            elif r.get("level") == "WARN" and ("read-back" in m or "read back" in m):
                rb_warn.append(f"{r.get('timestamp')} {m} {r.get('topic', '')} {r.get('error', '')}"[:300])
            elif m == "listening":
                starts += 1
            if r.get("level") == "ERROR":
                errors[(m.splitlines() or [""])[0][:90]] += 1
    except OSError:
        harness("relay/relay.log is missing")
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    try:
        tansu_panics = sum(1 for l in open(p("tansu", "tansu.log"), errors="replace") if "panicked" in ansi.sub("", l))
    except OSError:
        tansu_panics = 0

    # ---- details -------------------------------------------------------------------------
    def show(title, items, fmt, n=20):
        if items:
            print(f"{title} ({len(items)}; first {min(n, len(items))}):")
            for x in list(items)[:n]:
                print("  " + fmt(x))
    show("LOST: answered 200, in no topic", lost,
         lambda i: f"{i} {ans[i]['key']} answered {hms(ans[i]['t'])} seq {ans[i]['seq']} | near: {near(ans[i]['t'])}")
    show("DUPLICATE ce_ids", list(dups.items()),
         lambda x: f"{x[0]} " + str([(r['topic'], r['p'], r['o'], r['seq'], hms(r['ts'] / 1000)) for r in x[1]])
         + f" | 2nd copy near: {near(sorted(x[1], key=lambda r: r['ts'])[1]['ts'] / 1000)[-2:]}")
    show("ORDER: seq lower than an earlier one of its key", seq_viol, lambda v: str(v))
    show("ORDER: a call's steps out of the order sent", step_viol, lambda v: str(v))
    show("ANSWER CHANGED between attempts (id/seq)", inconsistent, lambda v: str(v))
    show("relay died unexpectedly", relay_died, str)
    show("broker died unexpectedly (restarted)", broker_died, str)
    show("relay did not exit on SIGTERM within 30 s", term_stuck, str)
    show("tansu panic repairs", tansu_repairs, str)
    show("relay restarts because its port was taken by another socket (harness)", bind_retries, str)
    show("read-back warnings (events sent again)", rb_warn, str, 10)
    show("relay ERROR lines by message", [f"{c} x {m}" for m, c in errors.most_common()], str, 10)
    show("webhook events in Kafka never answered 200 (allowed)", unanswered,
         lambda i: f"{i} {by_id[i][0]['subject']} {by_id[i][0]['type']} seq {by_id[i][0]['seq']} {hms(by_id[i][0]['ts'] / 1000)}", 5)
    if missing:
        print(f"journal seqs with no record in 1..{mx}: {len(missing)} {missing[:20]}")
    print("attempt outcomes:", dict(outcomes))
    print("events by source:", dict(by_source))

    # ---- summary table -------------------------------------------------------------------
    fails = []
    def row(name, value, bad=False, note=""):
        print(f"| {name:<38} | {str(value):>12} | {'FAIL' if bad else '':<4} | {note}")
    print()
    print("== Kafka soak summary: " + D)
    print(f"| {'':<38} | {'':>12} |      |")
    row("events sent (distinct call steps)", len(sent))
    row("attempts (all tries)", attempts, note=f"{outcomes.get('200', 0)} x 200, {attempts - outcomes.get('200', 0)} other")
    row("answered 200", len(ans), note=f"{first_dup} of them duplicate:true on the first 200")
    row("steps given up (no 200 in 120 s)", gave_up, note="not a failure by itself" if gave_up else "")
    row("records in Kafka", len(K), note=f"{len(by_id)} distinct ce_ids, {len(part)} partitions")
    row("LOSS (200, not in Kafka)", len(lost), bool(lost))
    row("duplicate ce_ids", len(dups), bool(dups), f"{extra} extra copies, {len(journaled_twice)} journaled twice" if dups else "")
    row("per-key seq order violations", len(seq_viol), bool(seq_viol))
    row("per-call step order violations", len(step_viol), bool(step_viol))
    row("answers whose id/seq changed", len(inconsistent), bool(inconsistent))
    row("in Kafka, never answered 200", len(unanswered), note="allowed (client gave up on an attempt)")
    row("ce_id header != value id", hdr_mismatch, bool(hdr_mismatch))
    row("journal seqs missing in Kafka", len(missing), note=f"of 1..{mx}")
    row("read-back: events skipped (found)", skipped, note=f"{readbacks} read-backs, {len(rb_warn)} warnings")
    row("relay starts / panics", f"{starts} / {panics}", bool(panics))
    row("relay died unexpectedly", len(relay_died), bool(relay_died))
    row("tansu panics / repairs", f"{tansu_panics} / {len(tansu_repairs)}", bool(tansu_panics), "harness: broker storage" if tansu_panics else "")
    row("lag drained to 0 at the end", "no" if "--lag-not-drained" in flags else "yes", False,
        "see LOSS" if "--lag-not-drained" in flags else "")
    row("faults", sum(faults.values()), note=", ".join(f"{k} {v}" for k, v in sorted(faults.items())))
    if lost: fails.append(f"{len(lost)} lost")
    if dups: fails.append(f"{len(dups)} duplicate ce_ids")
    if seq_viol or step_viol: fails.append(f"{len(seq_viol) + len(step_viol)} order violations")
    if inconsistent: fails.append(f"{len(inconsistent)} changed answers")
    if hdr_mismatch: fails.append(f"{hdr_mismatch} ce_id headers wrong")
    if panics: fails.append(f"{panics} relay panic lines")
    if relay_died: fails.append(f"relay died unexpectedly {len(relay_died)} times")
    if tansu_panics:
        print(f"RESULT: HARNESS PROBLEM: tansu panicked {tansu_panics} times; its storage cannot be trusted"
              + (f" (would fail: {'; '.join(fails)})" if fails else ""))
        return 2
    if fails:
        print("RESULT: FAIL: " + "; ".join(fails))
        return 1
    print("RESULT: PASS (0 loss, 0 duplicates, 0 order violations, no panic)")
    return 0

if __name__ == "__main__":
    sys.exit(main())
