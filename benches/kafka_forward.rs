//! Kafka forward rate: the relay's Kafka sink draining a full journal, beside a
//! plain rdkafka producer sending the same messages (same key, value, headers,
//! same producer settings) to the same tansu broker, in the same run.
//! Run: `cargo bench --bench kafka_forward` (needs tansu; see scripts/test.sh).
//! Prints one line per round and the medians; docs/kafka.md holds the figures.
//! While the sink drains, a probe task on the same runtime sleeps 1 ms at a
//! time and notes how late each wake-up runs; each round prints the worst
//! and the 99th percentile of those (timer granularity, up to about a
//! millisecond, included), and the longest poll of the sink's task, in
//! wall time and in its thread's CPU time. With one worker the probe shares
//! the sink's only worker: its lateness is what a webhook or a WebSocket
//! frame on that worker would wait, and it can be many times the sink's
//! longest poll (148–320 ms late against polls of 30–57 ms before
//! 2026-12-07, docs/kafka.md, "Forward rate"): a worker that always has a
//! task to run looks at its timers only every few dozen polls. The wall
//! times count a worker thread the OS set aside (a busy machine); the CPU
//! time is the poll's own work.
//! Env: `KAFKA_BENCH_EVENTS` (default 100000), `KAFKA_BENCH_ROUNDS` (default 5),
//! `KAFKA_BENCH_WORKERS`: the runtime's worker threads (default tokio's, one
//! per CPU, or `TOKIO_WORKER_THREADS`), `KAFKA_BENCH_RECORDS_PER_POLL`: the
//! sink's `Tuning::records_per_poll` (default the sink's),
//! `KAFKA_BENCH_PERF_CTL`: a `perf record --control fifo:` path; the relay's
//! forward phase alone is then profiled (filling the journal would dominate a
//! whole-run profile):
//! `mkfifo /tmp/ctl && KAFKA_BENCH_PERF_CTL=/tmp/ctl perf record -D -1 --control fifo:/tmp/ctl -g <bench binary> --bench`.

#[path = "../tests/peers/tansu/broker.rs"]
mod tansu;

#[path = "support/mod.rs"]
mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use callrelay::app::{Context, Relay};
use callrelay::config::Config;
use callrelay::event::{IncomingEvent, Transport};
use callrelay::journal::JournaledEvent;
use callrelay::sinks::kafka::config::KafkaConfig;
use callrelay::sinks::kafka::forwarder::Tuning;
use callrelay::sinks::kafka::producer::record;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use tokio_util::sync::CancellationToken;

fn event(n: u64) -> IncomingEvent {
    // 5,000 distinct keys: per-key order is exercised across partitions.
    support::ringing_event(n, 5_000, Transport::SocketIo)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Tells a `perf record --control` fifo, if one is named, to start or stop
/// sampling.
fn perf_control(command: &str) {
    if let Ok(path) = std::env::var("KAFKA_BENCH_PERF_CTL") {
        std::fs::write(&path, format!("{command}\n")).expect("perf control fifo");
    }
}

fn load(dir: &std::path::Path, text: &str) -> Config {
    let path = dir.join("relay.toml");
    std::fs::write(&path, text).expect("config");
    Config::load(&path).unwrap_or_else(|e| panic!("bench config:\n{e}"))
}

/// A relay without a Kafka sink whose journal holds `n` events.
async fn filled_relay(dir: &std::path::Path, n: u64) -> Relay {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\npath = {:?}\n",
        dir.join("journal").display().to_string()
    );
    let relay = Relay::start(load(dir, &text), dir.join("relay.toml"))
        .await
        .expect("relay");
    let journal = relay.ctx.journal.clone();
    tokio::task::spawn_blocking(move || {
        let events: Vec<IncomingEvent> = (0..n).map(event).collect();
        for chunk in events.chunks(2_000) {
            journal.append_batch(chunk).expect("append");
        }
    })
    .await
    .expect("fill");
    relay
}

fn kafka_config(dir: &std::path::Path, brokers: &str, topic: &str) -> KafkaConfig {
    let text = format!("[kafka]\nbrokers = {brokers:?}\ntopic = {topic:?}\n");
    load(dir, &text).kafka.expect("kafka section")
}

/// How late a task on the runtime gets to run: it sleeps 1 ms at a time
/// until `stop`, and gives how late each wake-up ran past its deadline.
/// Spawned, so it runs on a worker (`block_on`'s future runs on the main
/// thread, beside the workers).
fn probe(stop: CancellationToken) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut late = Vec::new();
        while !stop.is_cancelled() {
            let due = tokio::time::Instant::now() + Duration::from_millis(1);
            tokio::time::sleep_until(due).await;
            late.push(tokio::time::Instant::now().saturating_duration_since(due));
        }
        late
    })
}

/// The worst and the 99th percentile of `late`, in ms.
fn lateness_ms(mut late: Vec<Duration>) -> (f64, f64) {
    late.sort();
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let p99 = late.len().saturating_sub(1) * 99 / 100;
    (ms(late.last()), ms(late.get(p99)))
}

/// What the relay's sink did in a round.
struct Forwarded {
    /// From its first delivery report to its last (producer start-up, the
    /// same for both, is left out).
    took: Duration,
    /// How late the probe ran meanwhile (from the sink's start to its last
    /// report), in ms: the worst and the 99th percentile.
    late_max_ms: f64,
    late_p99_ms: f64,
    /// The longest poll of the sink's task over the same time, in ms: in
    /// wall time, and in the CPU time of the thread it ran on.
    longest_poll_ms: f64,
    longest_poll_cpu_ms: f64,
}

/// The CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// The relay's sink draining the journal, with a probe on the runtime.
async fn forward(ctx: &Arc<Context>, config: KafkaConfig, n: u64) -> Forwarded {
    let published = ctx.metrics.events_published.with_label_values(&["kafka"]);
    let before = published.get();
    let cancel = CancellationToken::new();
    let stop_probe = CancellationToken::new();
    let probing = probe(stop_probe.clone());
    let started = Instant::now();
    perf_control("enable");
    let mut tuning = Tuning::default();
    if let Ok(per_poll) = std::env::var("KAFKA_BENCH_RECORDS_PER_POLL") {
        tuning.records_per_poll = per_poll
            .parse()
            .expect("KAFKA_BENCH_RECORDS_PER_POLL: a count");
    }
    let mut sink = Box::pin(callrelay::sinks::kafka::run_with(
        config,
        ctx.clone(),
        cancel.clone(),
        tuning,
    ));
    let longest_ns = Arc::new(AtomicU64::new(0));
    let longest_cpu_ns = Arc::new(AtomicU64::new(0));
    let (longest, longest_cpu) = (longest_ns.clone(), longest_cpu_ns.clone());
    let task = tokio::spawn(std::future::poll_fn(move |cx| {
        let (began, began_cpu) = (Instant::now(), thread_cpu_ns());
        let polled = sink.as_mut().poll(cx);
        let took = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
        longest.fetch_max(took, Ordering::Relaxed);
        longest_cpu.fetch_max(thread_cpu_ns().saturating_sub(began_cpu), Ordering::Relaxed);
        polled
    }));
    let mut first = None;
    while published.get() < before + n {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "forwarding stalled"
        );
        if first.is_none() && published.get() > before {
            first = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = first
        .map(|f| f.elapsed())
        .unwrap_or_else(|| started.elapsed());
    perf_control("disable");
    let longest_poll_ms = longest_ns.load(Ordering::Relaxed) as f64 / 1e6;
    let longest_poll_cpu_ms = longest_cpu_ns.load(Ordering::Relaxed) as f64 / 1e6;
    stop_probe.cancel();
    let (late_max_ms, late_p99_ms) = lateness_ms(probing.await.expect("probe"));
    cancel.cancel();
    let _ = task.await;
    Forwarded {
        took,
        late_max_ms,
        late_p99_ms,
        longest_poll_ms,
        longest_poll_cpu_ms,
    }
}

/// A plain FutureProducer with the same settings and the same records, timed
/// the same way: first delivery report to last. The reports are awaited by a
/// task of their own while the records are queued, so the first one is
/// stamped when it comes, not once the last record is queued (which would
/// shorten the plain producer's window and flatter its rate).
async fn plain(config: &KafkaConfig, topic: &str, events: &[JournaledEvent]) -> Duration {
    let producer: FutureProducer = config.client_config().create().expect("producer");
    let (queued, mut to_await) = tokio::sync::mpsc::unbounded_channel::<DeliveryFuture>();
    // Woken at each report: a full queue waits for room, as the sink does,
    // not for a timer (a sleep is a millisecond at least).
    let room = Arc::new(tokio::sync::Notify::new());
    let reported = room.clone();
    let reports = tokio::spawn(async move {
        let mut pending = FuturesUnordered::new();
        let mut first = None;
        let mut sending = true;
        loop {
            tokio::select! {
                f = to_await.recv(), if sending => match f {
                    Some(f) => pending.push(f),
                    None => sending = false,
                },
                Some(r) = pending.next(), if !pending.is_empty() => {
                    assert!(matches!(r, Ok(Ok(_))), "plain delivery failed: {r:?}");
                    first.get_or_insert_with(Instant::now);
                    reported.notify_one();
                }
                else => break,
            }
        }
        first
    });
    for e in events {
        loop {
            match producer.send_result(record(e, topic)) {
                Ok(f) => {
                    queued.send(f).expect("report task");
                    break;
                }
                Err((err, _)) if err.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    room.notified().await;
                }
                Err((err, _)) => panic!("plain producer: {err}"),
            }
        }
    }
    drop(queued);
    let first = reports.await.expect("report task");
    let took = first.map(|f| f.elapsed()).unwrap_or_default();
    tokio::task::spawn_blocking(move || drop(producer))
        .await
        .expect("drop");
    took
}

/// The median; of an even count, the mean of the middle two.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    let n = env_u64("KAFKA_BENCH_EVENTS", 100_000);
    let rounds = env_u64("KAFKA_BENCH_ROUNDS", 5);
    let runtime = match std::env::var("KAFKA_BENCH_WORKERS") {
        Ok(workers) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.parse().expect("KAFKA_BENCH_WORKERS: a count"))
            .enable_all()
            .build()
            .expect("runtime"),
        Err(_) => tokio::runtime::Runtime::new().expect("runtime"),
    };
    runtime.block_on(async {
        let broker_dir = tempfile::tempdir().expect("tempdir");
        let broker = tansu::Tansu::memory(broker_dir.path());
        broker.create_topic("bench.plain", 3);
        broker.create_topic("bench.relay", 3);
        let brokers = broker.brokers();
        let (mut plain_rates, mut relay_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut late_maxes, mut late_p99s) = (Vec::new(), Vec::new());
        let (mut polls, mut polls_cpu) = (Vec::new(), Vec::new());
        println!(
            "| round | plain producer (events/s) | relay sink (events/s) | ratio | probe late, max (ms) | probe late, p99 (ms) | sink's longest poll, wall (ms) | sink's longest poll, CPU (ms) |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for round in 0..rounds {
            let dir = tempfile::tempdir().expect("tempdir");
            let relay = filled_relay(dir.path(), n).await;
            let ctx = relay.ctx.clone();
            let events = ctx.journal.read_after(0, n as usize).expect("read");
            let config = kafka_config(dir.path(), &brokers, "bench.relay");
            // Alternate which goes first, so warm-up favours neither.
            let (p, r) = if round % 2 == 0 {
                let p = plain(&config, "bench.plain", &events).await;
                (p, forward(&ctx, config, n).await)
            } else {
                let r = forward(&ctx, config.clone(), n).await;
                (plain(&config, "bench.plain", &events).await, r)
            };
            let (pr, rr) = (
                (n - 1) as f64 / p.as_secs_f64(),
                (n - 1) as f64 / r.took.as_secs_f64(),
            );
            println!(
                "| {round} | {pr:.0} | {rr:.0} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
                rr / pr,
                r.late_max_ms,
                r.late_p99_ms,
                r.longest_poll_ms,
                r.longest_poll_cpu_ms
            );
            polls.push(r.longest_poll_ms);
            polls_cpu.push(r.longest_poll_cpu_ms);
            late_maxes.push(r.late_max_ms);
            late_p99s.push(r.late_p99_ms);
            plain_rates.push(pr);
            ratios.push(rr / pr);
            relay_rates.push(rr);
            relay.shutdown();
            let _ = relay.wait().await;
        }
        let (pm, rm) = (median(plain_rates), median(relay_rates));
        println!(
            "\nmedian of {rounds} rounds, {n} events each: plain {pm:.0}/s, relay {rm:.0}/s, relay/plain = {:.2} (of the medians), {:.2} (median of the per-round ratios, the target's figure)",
            rm / pm,
            median(ratios)
        );
        println!(
            "probe on the runtime while the sink drained: median of the rounds' worst lateness {:.1} ms, of their p99 {:.1} ms; the sink's longest poll, median of the rounds' {:.1} ms wall, {:.1} ms CPU",
            median(late_maxes),
            median(late_p99s),
            median(polls),
            median(polls_cpu)
        );
    });
}
