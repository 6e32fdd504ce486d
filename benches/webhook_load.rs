//! Webhook ingest under load: the real relay (`Relay::start`, one Tel4vn
//! `[[webhook]]`, journal in a tempdir, every 200 sent only after the redb
//! commit) beside a bare axum handler that reads the body and answers 200,
//! both on 127.0.0.1 and driven by the same in-process HTTP/1.1 load generator
//! (hyper, keep-alive connections) in the same run.
//!
//! Measures, per round (rounds alternate relay/bare so noise hits both):
//! - max rate: closed loop, C connections each sending back to back; events/s
//!   answered 200 (for the relay: durable-acked, `duplicate: false`);
//! - latency at fixed offered rates: open loop, each connection has its own
//!   schedule (wrk2-style), latency counted from the *scheduled* send time so
//!   a stall is not hidden by coordinated omission; also send→answer.
//!
//! Every payload is a distinct, valid Tel4vn `ringing` hook with a unique
//! `call_id`, so nothing is deduplicated; the run checks that the journal's
//! last seq equals the number of 200s the relay gave (warm-up included).
//!
//! The ratio target is judged by the median, over rounds, of relay ÷ bare
//! at each connection count (both measured in the same round): printed per
//! count, with the per-round values.
//!
//! The journal is in a tempdir under `WEBHOOK_BENCH_DIR` (default: the
//! system's temp dir); the run prints its file system and refuses tmpfs,
//! where an fsync costs nothing and "durable" would mean nothing.
//!
//! Run: `cargo bench --bench webhook_load` (5 rounds of 3 s per measurement);
//! `-- --quick` for a smoke run. Env: `WEBHOOK_BENCH_ROUNDS`, `WEBHOOK_BENCH_SECS`,
//! `WEBHOOK_BENCH_WARMUP_SECS` (default 0.5, at 64 connections, both targets),
//! `WEBHOOK_BENCH_RATES` (comma list), `WEBHOOK_BENCH_CONNS` (closed-loop
//! connection counts, comma list), `WEBHOOK_BENCH_SERVER_THREADS`,
//! `WEBHOOK_BENCH_CLIENT_THREADS`, `WEBHOOK_BENCH_IDLE_SCREENS` and
//! `WEBHOOK_BENCH_IDLE_QUERY` (below).
//!
//! Idle screens: `WEBHOOK_BENCH_IDLE_SCREENS=N` (default 0) connects N
//! WebSocket clients to the relay's `/ws` before the warm-up and keeps them
//! connected through the relay's rounds. Their filter,
//! `WEBHOOK_BENCH_IDLE_QUERY` (default `subject=no-such-subject`), should
//! match none of the bench's events: they are sent nothing. One that names
//! one account, subject, literal type or vendor puts each session on a
//! route of that key's events (`Hub::subscribe_for`), which no commit of
//! the bench reaches: what N idle routed screens cost. One that does not
//! (`type=no.such.*`, a glob) leaves each on the shared ring, where
//! `Hub::publish` (on the journal writer's thread, inside its commit) wakes
//! it at every commit: what N idle screens on the ring cost the writer, and
//! the server's threads, per commit. The relay listens on loopback without
//! `websocket.tokens`, so they send no token (and no `Origin`);
//! `websocket.max_clients` is raised to N if N is above its default
//! (10,000), and the run checks that the open-file limit (which
//! `Relay::start` raises to its hard limit as far as the config needs)
//! holds both ends of every screen. Their client tasks run on a one-thread
//! runtime of their own (`screens`), not on the load generator's; each reads
//! its socket (answering the pings, every 25 s), and counts any other frame.
//! The run prints how many upgrades were answered 101 before the rounds,
//! and how many screens were still open, and what they were sent, after.
//! The bare handler's rounds are unchanged.
//! `-- --drive URL --rate N --secs S` only drives an external relay (any
//! `[[webhook]] vendor = "tel4vn"` with `api_key = "bench-key"`), for profiling
//! (scripts/perf/profile_ingest.sh). Prints Markdown tables; docs/PERFORMANCE.md
//! holds the figures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use callrelay::sinks::websocket::config::DEFAULT_MAX_CLIENTS;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message;

/// The daemon's allocator (src/main.rs), so the relay here runs as shipped;
/// the bare server shares it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/tel4vn.rs"]
mod tel4vn;

const API_KEY: &str = "bench-key";
const PATH: &str = "/hooks/tel4vn/bench";

/// Unique call ids across the whole process (every round, both targets).
static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

fn payload() -> Bytes {
    tel4vn::ringing_hook(NEXT_CALL.fetch_add(1, Ordering::Relaxed))
}

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    path: String,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    other: u64,
    duplicates: u64,
    /// Scheduled send → answer (open loop) or send → answer (closed loop), µs.
    corrected_us: Vec<u32>,
    /// Actual send → answer, µs.
    service_us: Vec<u32>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        self.other += o.other;
        self.duplicates += o.duplicates;
        self.corrected_us.extend(o.corrected_us);
        self.service_us.extend(o.service_us);
    }
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One keep-alive connection; `interval` None = closed loop.
async fn connection(
    target: Target,
    start: Instant,
    offset: Duration,
    interval: Option<Duration>,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let Ok(stream) = tokio::net::TcpStream::connect(target.addr).await else {
        tally.other += 1;
        return tally;
    };
    let _ = stream.set_nodelay(true);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        tally.other += 1;
        return tally;
    };
    tokio::spawn(conn);
    let host = target.addr.to_string();
    if interval.is_none() {
        // The rate is counted from `start`: a closed loop that began as soon
        // as it connected would count requests sent before it.
        tokio::time::sleep_until(start.into()).await;
    }
    let mut k: u32 = 0;
    loop {
        let scheduled = match interval {
            Some(iv) => {
                let at = start + offset + iv * k;
                k += 1;
                if at >= until {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                now
            }
        };
        let request = Request::post(target.path.as_str())
            .header("host", host.as_str())
            .header("content-type", "application/json")
            .header("authorization", "Bearer bench-key")
            .body(Full::new(payload()));
        let Ok(request) = request else {
            tally.other += 1;
            break;
        };
        if sender.ready().await.is_err() {
            tally.other += 1;
            break;
        }
        let sent = Instant::now();
        let response = match sender.send_request(request).await {
            Ok(r) => r,
            Err(_) => {
                tally.other += 1;
                break;
            }
        };
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                tally.other += 1;
                break;
            }
        };
        let done = Instant::now();
        if status.is_success() {
            tally.ok += 1;
            if body.windows(16).any(|w| w == b"\"duplicate\":true") {
                tally.duplicates += 1;
            }
        } else {
            tally.other += 1;
        }
        tally
            .corrected_us
            .push(done.duration_since(scheduled).as_micros() as u32);
        tally
            .service_us
            .push(done.duration_since(sent).as_micros() as u32);
    }
    tally
}

struct Measured {
    rate: f64,
    ok: u64,
    other: u64,
    duplicates: u64,
    p50: f64,
    p99: f64,
    service_p50: f64,
    service_p99: f64,
}

/// Drives `target` with `conns` connections for `secs`; `rate` None = closed loop.
async fn drive(target: &Target, conns: usize, rate: Option<f64>, secs: f64) -> Measured {
    let start = Instant::now() + Duration::from_millis(50);
    let until = start + Duration::from_secs_f64(secs);
    let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
    let mut tasks = Vec::with_capacity(conns);
    for i in 0..conns {
        // Stagger the per-connection schedules evenly over one interval.
        let offset = interval
            .map(|iv| iv.mul_f64(i as f64 / conns as f64))
            .unwrap_or_default();
        tasks.push(tokio::spawn(connection(
            target.clone(),
            start,
            offset,
            interval,
            until,
        )));
    }
    let mut all = Tally::default();
    for t in tasks {
        if let Ok(t) = t.await {
            all.merge(t);
        }
    }
    let elapsed = Instant::now().duration_since(start).as_secs_f64();
    all.corrected_us.sort_unstable();
    all.service_us.sort_unstable();
    Measured {
        rate: all.ok as f64 / elapsed,
        ok: all.ok,
        other: all.other,
        duplicates: all.duplicates,
        p50: percentile_ms(&all.corrected_us, 0.50),
        p99: percentile_ms(&all.corrected_us, 0.99),
        service_p50: percentile_ms(&all.service_us, 0.50),
        service_p99: percentile_ms(&all.service_us, 0.99),
    }
}

fn bare_router() -> Router {
    // Reads the body (as any server must, to keep the connection alive) and
    // answers 200 with no other work.
    Router::new().route(PATH, post(|_body: Bytes| async { "ok" }))
}

fn relay_config(dir: &std::path::Path, idle_screens: usize) -> String {
    format!(
        concat!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n",
            "[journal]\npath = {:?}\nmax_size = \"8GiB\"\n\n",
            "[websocket]\nmax_clients = {}\n\n",
            "[[webhook]]\nvendor = \"tel4vn\"\naccount = \"bench\"\napi_key = \"{}\"\n"
        ),
        dir.join("journal").display().to_string(),
        // The default, kept unless the idle screens need more.
        idle_screens.max(DEFAULT_MAX_CLIENTS),
        API_KEY
    )
}

/// The idle screens' default query: a filter that no event of the bench
/// matches (Tel4vn `ringing` hooks whose subject is their call id), routed
/// on its subject.
const IDLE_SCREEN_QUERY: &str = "subject=no-such-subject";

/// What the idle screens saw, shared by their tasks.
#[derive(Default)]
struct Screens {
    /// Upgrades answered 101.
    upgraded: AtomicU64,
    /// Upgrades refused or failed (any answer but 101, or no answer).
    refused: AtomicU64,
    /// Screens whose socket has ended (closed by the relay, or an error).
    ended: AtomicU64,
    /// Frames other than ping and pong (text, binary, close): none is
    /// expected before the relay shuts down.
    frames: AtomicU64,
}

/// Connects `n` WebSocket clients to `addr`'s `/ws` with `query`, 64
/// upgrades at a time, each then reading its socket until it ends; returns
/// once every upgrade has been answered.
async fn connect_idle_screens(addr: SocketAddr, n: usize, query: &str, screens: Arc<Screens>) {
    let url = format!("ws://{addr}/ws?{query}");
    let connecting = Arc::new(tokio::sync::Semaphore::new(64));
    let mut upgrades = Vec::with_capacity(n);
    for _ in 0..n {
        let url = url.clone();
        let screens = screens.clone();
        let Ok(permit) = connecting.clone().acquire_owned().await else {
            break;
        };
        upgrades.push(tokio::spawn(async move {
            let upgraded = match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => tokio_tungstenite::client_async(url, stream).await.ok(),
                Err(_) => None,
            };
            drop(permit);
            let Some((mut ws, response)) = upgraded.filter(|(_, r)| r.status().as_u16() == 101)
            else {
                screens.refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            drop(response);
            screens.upgraded.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                // Reading answers the relay's pings (tungstenite queues the
                // pong and writes it on the next read).
                while let Some(message) = ws.next().await {
                    match message {
                        Ok(Message::Ping(_) | Message::Pong(_)) => {}
                        Ok(Message::Close(_)) => {
                            screens.frames.fetch_add(1, Ordering::Relaxed);
                            // Answer it: the relay's shutdown waits for its sessions.
                            let _ = ws.close(None).await;
                            break;
                        }
                        Ok(_) => {
                            screens.frames.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
                screens.ended.fetch_add(1, Ordering::Relaxed);
            });
        }));
    }
    for upgrade in upgrades {
        let _ = upgrade.await;
    }
}

/// The soft open-file limit, if it can be read.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    soft.parse().ok()
}

fn env_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn env_one<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn runtime(threads: usize, name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Open-loop connections for a rate: enough that one slow answer does not
/// hold the schedule back, few enough not to drown 2 cores in tasks.
fn open_conns(rate: f64) -> usize {
    ((rate / 100.0).ceil() as usize).clamp(16, 128)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let client_threads = env_one("WEBHOOK_BENCH_CLIENT_THREADS", 1usize);
    let client = runtime(client_threads, "load");

    if let Some(url) = arg_value(&args, "--drive") {
        drive_external(&client, &args, &url);
        return;
    }

    let quick = args.iter().any(|a| a == "--quick");
    let rounds = env_one("WEBHOOK_BENCH_ROUNDS", if quick { 1usize } else { 5 });
    let secs = env_one("WEBHOOK_BENCH_SECS", if quick { 1.0f64 } else { 3.0 });
    let warmup_secs = env_one("WEBHOOK_BENCH_WARMUP_SECS", 0.5f64);
    let rates: Vec<f64> = env_list("WEBHOOK_BENCH_RATES", "1000,5000,10000");
    let conns: Vec<usize> = env_list("WEBHOOK_BENCH_CONNS", "64,256");
    let server_threads = env_one("WEBHOOK_BENCH_SERVER_THREADS", 2usize);
    let idle_screens = env_one("WEBHOOK_BENCH_IDLE_SCREENS", 0usize);
    let idle_query =
        std::env::var("WEBHOOK_BENCH_IDLE_QUERY").unwrap_or_else(|_| IDLE_SCREEN_QUERY.to_owned());
    let server = runtime(server_threads, "server");

    let dir = match std::env::var_os("WEBHOOK_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base).expect("tempdir in WEBHOOK_BENCH_DIR"),
        None => tempfile::tempdir().expect("tempdir"),
    };
    let fs = filesystem_of(dir.path());
    assert!(
        fs != "tmpfs" && fs != "ramfs",
        "the journal's directory {} is on {fs}, where fsync is free: set WEBHOOK_BENCH_DIR to a disk",
        dir.path().display()
    );
    let relay = server.block_on(async {
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, relay_config(dir.path(), idle_screens)).expect("config");
        let config =
            callrelay::config::Config::load(&path).unwrap_or_else(|e| panic!("bench config:\n{e}"));
        callrelay::app::Relay::start(config, path)
            .await
            .unwrap_or_else(|e| panic!("relay start: {e}"))
    });
    let bare_addr = server.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, bare_router()).await;
        });
        addr
    });
    let targets = [
        (
            "relay",
            Target {
                addr: relay.addr,
                path: PATH.into(),
            },
        ),
        (
            "bare",
            Target {
                addr: bare_addr,
                path: PATH.into(),
            },
        ),
    ];

    // Idle screens, before the warm-up: by the rounds every session has
    // long since subscribed (to their route, or the shared ring).
    let screens = Arc::new(Screens::default());
    let screens_runtime = (idle_screens > 0).then(|| {
        // Both ends of every screen are in this process, beside the load's
        // connections (256 at most by default) and the journal's files.
        let need = 2 * idle_screens as u64 + 1024;
        let limit = open_file_limit();
        assert!(
            limit.is_none_or(|l| l >= need),
            "the open-file limit {limit:?} is below the {need} that {idle_screens} idle screens need: raise `ulimit -n`"
        );
        let rt = runtime(1, "screens");
        let started = Instant::now();
        rt.block_on(connect_idle_screens(
            relay.addr,
            idle_screens,
            &idle_query,
            screens.clone(),
        ));
        eprintln!(
            "idle screens: {} of {idle_screens} upgrades answered 101 ({} refused or failed) in {:.1} s, \
             filter {idle_query}, on their own 1-thread runtime; open-file limit {limit:?}",
            screens.upgraded.load(Ordering::Relaxed),
            screens.refused.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
        rt
    });

    eprintln!(
        "webhook_load: {rounds} rounds × {secs} s after a {warmup_secs} s warm-up, closed-loop conns {conns:?}, \
         rates {rates:?}, server threads {server_threads}, client threads {client_threads}, journal on {fs}"
    );
    let mut relay_ok = 0u64;
    let mut failures = 0u64;
    let mut duplicates = 0u64;
    // Warm up both (connections, allocator, journal file growth). A longer
    // warm-up (WEBHOOK_BENCH_WARMUP_SECS) measures a relay whose journal
    // page cache (64 MiB, about 90,000 of these events) has filled, as a
    // relay that has run for a while has: until then each commit faults in
    // and zeroes fresh memory for it.
    for (ti, (_, t)) in targets.iter().enumerate() {
        let m = client.block_on(drive(t, 64, None, warmup_secs));
        if ti == 0 {
            relay_ok += m.ok;
            duplicates += m.duplicates;
        }
        failures += m.other;
    }
    eprintln!("warm-up: the relay journaled {relay_ok} events");

    // max[target][conns] and lat[target][rate] → per-round values.
    let mut max: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); conns.len()]; 2];
    let mut ratio: Vec<f64> = Vec::new();
    let mut lat: Vec<Vec<Vec<Measured>>> = (0..2)
        .map(|_| (0..rates.len()).map(|_| Vec::new()).collect())
        .collect();
    for round in 0..rounds {
        let mut best = [0.0f64; 2];
        for (ci, &c) in conns.iter().enumerate() {
            for (ti, (name, t)) in targets.iter().enumerate() {
                let m = client.block_on(drive(t, c, None, secs));
                eprintln!(
                    "round {round} {name:5} closed {c:4} conns: {:8.0} ev/s  p50 {:.2} ms  p99 {:.2} ms  non-200 {}",
                    m.rate, m.p50, m.p99, m.other
                );
                if ti == 0 {
                    relay_ok += m.ok;
                    duplicates += m.duplicates;
                }
                failures += m.other;
                best[ti] = best[ti].max(m.rate);
                max[ti][ci].push(m.rate);
            }
        }
        ratio.push(best[0] / best[1]);
        for (ri, &r) in rates.iter().enumerate() {
            for (ti, (name, t)) in targets.iter().enumerate() {
                let m = client.block_on(drive(t, open_conns(r), Some(r), secs));
                eprintln!(
                    "round {round} {name:5} open {r:6.0}/s: achieved {:8.0}/s  p50 {:.2} ms  p99 {:.2} ms  (send→answer p50 {:.2} p99 {:.2})  non-200 {}",
                    m.rate, m.p50, m.p99, m.service_p50, m.service_p99, m.other
                );
                if ti == 0 {
                    relay_ok += m.ok;
                    duplicates += m.duplicates;
                }
                failures += m.other;
                lat[ti][ri].push(m);
            }
        }
    }

    let last_seq = relay.ctx.journal.last_seq();
    if idle_screens > 0 {
        println!();
        println!(
            "idle screens: {} of {idle_screens} connected (101) before the rounds, {} still open after them, {} frames other than ping/pong received",
            screens.upgraded.load(Ordering::Relaxed),
            screens
                .upgraded
                .load(Ordering::Relaxed)
                .saturating_sub(screens.ended.load(Ordering::Relaxed)),
            screens.frames.load(Ordering::Relaxed)
        );
    }
    println!();
    println!(
        "relay: {relay_ok} 200s (warm-up included), journal last seq {last_seq}, duplicates {duplicates}, non-200 answers (both targets) {failures}; journal on {fs}"
    );
    println!();
    println!("### Max rate (closed loop), median of {rounds} rounds");
    println!();
    println!(
        "| connections | relay events/s (durable-acked) | bare axum 200/s | relay / bare (medians) | per-round relay / bare | median of per-round ratios |"
    );
    println!("|---:|---:|---:|---:|---|---:|");
    for (ci, &c) in conns.iter().enumerate() {
        let r = median(max[0][ci].clone());
        let b = median(max[1][ci].clone());
        let per_round: Vec<f64> = max[0][ci]
            .iter()
            .zip(&max[1][ci])
            .map(|(r, b)| r / b)
            .collect();
        let listed: Vec<String> = per_round.iter().map(|x| format!("{x:.2}")).collect();
        println!(
            "| {c} | {r:.0} | {b:.0} | {:.2} | {} | **{:.2}** |",
            r / b,
            listed.join(" "),
            median(per_round.clone())
        );
    }
    let best_relay = median(
        (0..rounds)
            .map(|i| max[0].iter().map(|v| v[i]).fold(0.0, f64::max))
            .collect(),
    );
    let best_bare = median(
        (0..rounds)
            .map(|i| max[1].iter().map(|v| v[i]).fold(0.0, f64::max))
            .collect(),
    );
    let listed: Vec<String> = ratio.iter().map(|x| format!("{x:.2}")).collect();
    println!(
        "| best count per round | {best_relay:.0} | {best_bare:.0} | {:.2} | {} | {:.2} |",
        best_relay / best_bare,
        listed.join(" "),
        median(ratio.clone())
    );
    println!();
    println!(
        "### Latency at fixed offered rates (open loop), median of {rounds} rounds; ms from the scheduled send"
    );
    println!();
    println!(
        "| offered/s | relay achieved/s | relay p50 | relay p99 | bare achieved/s | bare p50 | bare p99 | relay p99 send→answer | bare p99 send→answer |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (ri, &r) in rates.iter().enumerate() {
        let col = |ti: usize, f: &dyn Fn(&Measured) -> f64| -> f64 {
            median(lat[ti][ri].iter().map(f).collect())
        };
        println!(
            "| {r:.0} | {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} |",
            col(0, &|m| m.rate),
            col(0, &|m| m.p50),
            col(0, &|m| m.p99),
            col(1, &|m| m.rate),
            col(1, &|m| m.p50),
            col(1, &|m| m.p99),
            col(0, &|m| m.service_p99),
            col(1, &|m| m.service_p99),
        );
    }

    relay.shutdown();
    let _ = server.block_on(relay.wait());
    drop(screens_runtime);
    assert_eq!(failures, 0, "some requests were not answered 200");
    assert_eq!(duplicates, 0, "a unique payload was deduplicated");
    assert_eq!(
        last_seq, relay_ok,
        "the journal's last seq is not the number of events acknowledged 200"
    );
}

/// The file system type of the mount holding `path` (`/proc/self/mountinfo`'s
/// longest mount point that is a prefix of it), or "unknown".
fn filesystem_of(path: &std::path::Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return "unknown".into();
    };
    table
        .lines()
        .filter_map(|line| {
            // mount-id parent major:minor root MOUNT-POINT options ... - FSTYPE source ...
            let mount_point = line.split(' ').nth(4)?;
            let fstype = line.split(" - ").nth(1)?.split(' ').next()?;
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), fstype.to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fstype)| fstype)
        .unwrap_or_else(|| "unknown".into())
}

/// `--drive URL [--rate N] [--secs S] [--conns C]`: load only, against a relay
/// started elsewhere (e.g. under valgrind or perf).
fn drive_external(client: &tokio::runtime::Runtime, args: &[String], url: &str) {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("--drive {url}: {e}"));
    let host = parsed.host_str().unwrap_or("127.0.0.1");
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .unwrap_or_else(|e| panic!("--drive {url}: {e}"));
    let target = Target {
        addr,
        path: parsed.path().to_owned(),
    };
    let secs: f64 = arg_value(args, "--secs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let rate: Option<f64> = arg_value(args, "--rate").and_then(|v| v.parse().ok());
    let conns: usize = arg_value(args, "--conns")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rate.map(open_conns).unwrap_or(64));
    // Call ids from the clock: a second drive of the same relay (another
    // process, counting from 1 again) must not send the first one's events.
    let first_call = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    NEXT_CALL.store(first_call, Ordering::Relaxed);
    let m = client.block_on(drive(&target, conns, rate, secs));
    println!(
        "{url}: {} ok ({} of them duplicates), {} non-200, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
        m.ok, m.duplicates, m.other, m.rate, m.p50, m.p99
    );
}
