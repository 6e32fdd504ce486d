//! WebSocket fan-out: deliveries per second to 1,000 and 10,000 connected
//! clients, memory per idle client, and the p99 from commit to frame at a
//! client at ~1,000 events/s with 1,000 clients — for callrelay's `/ws` and,
//! in the same run and fed the same journaled frames, for a minimal
//! tokio-tungstenite broadcast server (the ratio is the figure to watch).
//!
//! Run: `cargo bench --bench ws_fanout`. The clients live in a child process
//! (this binary re-executed with `--pool`), so the parent's RSS delta is the
//! server's memory per client. Prints a Markdown table; docs/websocket.md
//! holds the figures.
//!
//! Two baselines: one that writes each frame on its own (`send`), and one
//! that batches what is waiting into one write, as callrelay does.
//! Env: `WS_FANOUT_RUNS` ("clients:events,…"; empty for the latency runs
//! alone), `WS_FANOUT_RATE` (the latency runs' events/s, default 1,000),
//! `WS_FANOUT_LATENCY_CLIENTS` (default 1,000), `WS_FANOUT_POOL_NICE` (the
//! clients' niceness, default 0), `WS_FANOUT_CLIENT` (how the clients read:
//! `raw`, the default, or `tungstenite`; a comma list runs the latency runs
//! once per kind, side by side), `WS_FANOUT_FILTERED` ("clients:accounts",
//! unset by default: see below).
//!
//! `WS_FANOUT_FILTERED="5000:5000"` adds, after the other runs, a run of
//! filtered screens against callrelay alone (the baselines do not filter):
//! client i connects with `?account=a{i % accounts}`, event n carries
//! account `a{n % accounts}`, journaled at `WS_FANOUT_RATE` for 10 s. It
//! prints what this process (the relay; the clients are not in it) spends
//! on the CPU per event, the frames delivered against those expected, and
//! commit → frame at the clients. A CRM's screens each filter to one
//! account, and what the relay spends on the sessions an event does not
//! match is the figure this run exists for.
//!
//! The clients share the machine with the server they measure, so what they
//! spend reading is taken from it. The `raw` client does as little as a
//! client can: a handshake written by hand, then each frame cut from one
//! reused buffer, with no copy, no UTF-8 check and no allocation (a real
//! screen's parsing happens on its own machine). `tungstenite` is
//! tokio-tungstenite's client, which the figures before 2026-12-06 used.

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callrelay::app::Relay;
use callrelay::config::Config;
use callrelay::event::{IncomingEvent, Transport};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn event(n: u64) -> IncomingEvent {
    support::ringing_event(n, u64::MAX, Transport::Webhook)
}

/// [`event`] `n` of account `a{n % accounts}`, for the filtered run.
fn account_event(n: u64, accounts: u64) -> IncomingEvent {
    IncomingEvent {
        account: format!("a{}", n % accounts),
        ..event(n)
    }
}

/// This process's CPU time so far, user and system, in µs (from
/// `/proc/self/stat`, in ticks of 10 ms: USER_HZ is 100 on Linux).
fn cpu_us() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name, in parentheses, may hold spaces: count from after it.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are the 14th and 15th fields, the state the 3rd.
    let ticks = |i: usize| -> u64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0) };
    (ticks(11) * 10_000, ticks(12) * 10_000)
}

// ---------------------------------------------------------------- the pool

/// The seq of an event frame, read without parsing the JSON or allocating.
fn frame_seq(text: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"seq\":";
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(KEY));
    let at = FINDER.find(text)? + KEY.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut seq: Option<u64> = None;
    for &digit in digits {
        seq = seq
            .unwrap_or(0)
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'));
    }
    seq
}

/// How the pool's clients read their frames (`WS_FANOUT_CLIENT`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum ClientKind {
    /// [`raw_client`]: as little work per frame as a client can do.
    Raw,
    /// tokio-tungstenite's client: each frame parsed, UTF-8 checked and
    /// handed over as a message of its own.
    Tungstenite,
}

impl ClientKind {
    fn name(self) -> &'static str {
        match self {
            ClientKind::Raw => "raw",
            ClientKind::Tungstenite => "tungstenite",
        }
    }

    fn parse(name: &str) -> ClientKind {
        match name.trim() {
            "raw" => ClientKind::Raw,
            "tungstenite" => ClientKind::Tungstenite,
            other => panic!("WS_FANOUT_CLIENT: {other:?} is neither raw nor tungstenite"),
        }
    }

    /// `WS_FANOUT_CLIENT`: the kinds to run, `raw` alone by default.
    fn from_env() -> Vec<ClientKind> {
        std::env::var("WS_FANOUT_CLIENT")
            .map(|v| v.split(',').map(ClientKind::parse).collect())
            .unwrap_or_else(|_| vec![ClientKind::Raw])
    }
}

/// A whole server frame at the start of `bytes`: its opcode, its payload's
/// range within `bytes`, and its length; `None` while more bytes are needed.
fn server_frame(bytes: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let (first, second) = (*bytes.first()?, *bytes.get(1)?);
    // Both servers write each message as one unmasked frame.
    assert!(first & 0x80 != 0, "a fragmented frame from the server");
    assert!(second & 0x80 == 0, "a masked frame from the server");
    let (len, at) = match second & 0x7f {
        126 => (
            u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        short => (usize::from(short), 2),
    };
    let used = at + len;
    (bytes.len() >= used).then_some((first & 0x0f, at..used, used))
}

/// Opens the WebSocket at `url` over `stream`, calls `on_open` once it is
/// open, and hands each text frame's payload to `on_text` until the server
/// closes. One buffer, reused: the
/// bytes of a frame cut by a read are moved to its start, and it doubles
/// only for a frame larger than itself. Pings are answered (a zero mask
/// leaves a client frame's payload as it is).
async fn raw_client(
    mut stream: TcpStream,
    url: &str,
    on_open: impl FnOnce(),
    mut on_text: impl FnMut(&[u8]),
) {
    let (host, path) = url
        .trim_start_matches("ws://")
        .split_once('/')
        .expect("ws url with a path");
    let request = format!(
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("upgrade request");
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = 0;
    let mut start = loop {
        let n = stream
            .read(&mut buf[end..])
            .await
            .expect("upgrade response");
        assert!(n > 0, "the server closed before its upgrade response");
        end += n;
        if let Some(at) = buf[..end].windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(
                buf.starts_with(b"HTTP/1.1 101"),
                "upgrade refused: {}",
                String::from_utf8_lossy(&buf[..at])
            );
            break at + 4;
        }
        assert!(end < buf.len(), "an upgrade response head over 64 KiB");
    };
    on_open();
    loop {
        while let Some((opcode, payload, used)) = server_frame(&buf[start..end]) {
            let frame = &buf[start..start + used];
            match opcode {
                0x1 => on_text(&frame[payload]),
                0x8 => return,
                0x9 => {
                    let payload = &frame[payload];
                    let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(payload);
                    if stream.write_all(&pong).await.is_err() {
                        return;
                    }
                }
                _ => {}
            }
            start += used;
        }
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        if end == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match stream.read(&mut buf[end..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => end += n,
        }
    }
}

/// tokio-tungstenite's client: calls `on_open` once the WebSocket is open,
/// then hands each text frame's payload to `on_text` until the server closes.
async fn tungstenite_client(
    stream: TcpStream,
    url: &str,
    on_open: impl FnOnce(),
    mut on_text: impl FnMut(&[u8]),
) {
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("upgrade");
    on_open();
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(t)) => on_text(t.as_bytes()),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// One pool client, as the pool's summary sees it.
#[derive(Default)]
struct ClientState {
    /// The last seq received; `u64::MAX` once closed.
    last: AtomicU64,
    /// Frames received (one counter per client: a shared one would be a
    /// cache line the two cores pass back and forth a million times a second).
    frames: AtomicU64,
    /// (seq, receive time in µs since the epoch), while recording.
    samples: std::sync::Mutex<Vec<(u64, u64)>>,
}

/// Child mode: `--pool URL N SOURCE_IP KIND [ACCOUNTS]`; commands on stdin,
/// answers on stdout. With ACCOUNTS, client i filters to account
/// `a{i % ACCOUNTS}`.
async fn pool(url: String, n: usize, source: Ipv4Addr, kind: ClientKind, accounts: Option<usize>) {
    let addr: SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("pool url");
    let closed = Arc::new(AtomicUsize::new(0));
    let record = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let connecting = Arc::new(tokio::sync::Semaphore::new(64));
    let connected = Arc::new(AtomicUsize::new(0));
    let states: Vec<Arc<ClientState>> = (0..n).map(|_| Arc::default()).collect();
    for (i, state) in states.iter().enumerate() {
        let url = match accounts {
            Some(accounts) => format!("{url}?account=a{}", i % accounts),
            None => url.clone(),
        };
        let (closed, record, connecting, connected, state) = (
            closed.clone(),
            record.clone(),
            connecting.clone(),
            connected.clone(),
            state.clone(),
        );
        tokio::spawn(async move {
            let permit = connecting.acquire().await.expect("semaphore");
            let socket = TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::new(IpAddr::V4(source), 0))
                .expect("bind");
            let stream = socket.connect(addr).await.expect("connect");
            let on_open = || {
                drop(permit);
                connected.fetch_add(1, Ordering::AcqRel);
            };
            let on_text = |text: &[u8]| {
                state.frames.fetch_add(1, Ordering::Relaxed);
                let Some(seq) = frame_seq(text) else {
                    return;
                };
                if record.load(Ordering::Relaxed) {
                    // Uncontended: only the pool's summary takes it too, at the end.
                    state.samples.lock().expect("samples").push((seq, now_us()));
                }
                state.last.store(seq, Ordering::Release);
            };
            match kind {
                ClientKind::Raw => raw_client(stream, &url, on_open, on_text).await,
                ClientKind::Tungstenite => tungstenite_client(stream, &url, on_open, on_text).await,
            }
            closed.fetch_add(1, Ordering::AcqRel);
            state.last.store(u64::MAX, Ordering::Release);
        });
    }
    let mut waited = 0;
    while connected.load(Ordering::Acquire) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
        // A client whose connect or upgrade failed panicked its task and
        // will never count: give up rather than wait for good.
        assert!(
            waited < 6_000,
            "pool: only {} of {n} clients connected in 120 s",
            connected.load(Ordering::Acquire)
        );
        if waited % 250 == 0 {
            eprintln!(
                "pool: {} of {n} connected, {} closed",
                connected.load(Ordering::Acquire),
                closed.load(Ordering::Acquire)
            );
        }
    }
    let mut out = tokio::io::stdout();
    out.write_all(b"ready\n").await.expect("stdout");
    out.flush().await.expect("stdout");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["record", expected] => {
                // Room for every sample, its pages touched now: growing
                // ten million samples while measuring took a tenth of the
                // clients' CPU (copies, and the kernel zeroing new pages).
                let expected: usize = expected.parse().expect("expected samples");
                for state in &states {
                    let mut samples = state.samples.lock().expect("samples");
                    samples.resize(expected, (0, 0));
                    samples.clear();
                }
                record.store(true, Ordering::Release);
                // The parent journals nothing before this answer: no event
                // goes unsampled while the pages are touched.
                out.write_all(b"recording\n").await.expect("stdout");
                out.flush().await.expect("stdout");
            }
            ["until", seq] => {
                let seq: u64 = seq.parse().expect("seq");
                while !states.iter().all(|s| s.last.load(Ordering::Acquire) >= seq) {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let line = format!(
                    "done {} {}\n",
                    states
                        .iter()
                        .map(|s| s.frames.load(Ordering::Acquire))
                        .sum::<u64>(),
                    closed.load(Ordering::Acquire)
                );
                out.write_all(line.as_bytes()).await.expect("stdout");
                out.flush().await.expect("stdout");
            }
            // The filtered run's wait: a filtered client may never see the
            // last seq, so frames are counted instead, until `expected` or
            // `timeout` seconds.
            ["count", expected, timeout] => {
                let expected: u64 = expected.parse().expect("expected frames");
                let timeout = Duration::from_secs(timeout.parse().expect("timeout"));
                let frames = || {
                    states
                        .iter()
                        .map(|s| s.frames.load(Ordering::Acquire))
                        .sum::<u64>()
                };
                let started = Instant::now();
                while frames() < expected && started.elapsed() < timeout {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let each = states.iter().map(|s| s.frames.load(Ordering::Acquire));
                let line = format!(
                    "counted {} {} {} {}\n",
                    frames(),
                    closed.load(Ordering::Acquire),
                    each.clone().min().unwrap_or(0),
                    each.max().unwrap_or(0)
                );
                out.write_all(line.as_bytes()).await.expect("stdout");
                out.flush().await.expect("stdout");
            }
            ["latency", path] => {
                let commits: HashMap<u64, u64> = std::fs::read_to_string(path)
                    .expect("commit times")
                    .lines()
                    .filter_map(|l| {
                        let (s, t) = l.split_once(' ')?;
                        Some((s.parse().ok()?, t.parse().ok()?))
                    })
                    .collect();
                let samples: Vec<(u64, u64)> = states
                    .iter()
                    .flat_map(|s| std::mem::take(&mut *s.samples.lock().expect("samples")))
                    .collect();
                let mut lat: Vec<u64> = samples
                    .iter()
                    .filter_map(|(seq, at)| Some(at.saturating_sub(*commits.get(seq)?)))
                    .collect();
                // Samples whose commit was not stamped: said, since a stamp
                // the stamping thread missed under load would bias the figure.
                let unstamped = samples.len() - lat.len();
                lat.sort_unstable();
                let p = |q: f64| {
                    lat.get(((lat.len().max(1) - 1) as f64 * q) as usize)
                        .copied()
                        .unwrap_or(0)
                };
                let line = format!(
                    "lat {} {} {} {} {} {unstamped}\n",
                    lat.len(),
                    p(0.5),
                    p(0.99),
                    p(0.999),
                    lat.last().copied().unwrap_or(0)
                );
                out.write_all(line.as_bytes()).await.expect("stdout");
                out.flush().await.expect("stdout");
            }
            ["exit"] => std::process::exit(0),
            _ => {}
        }
    }
}

/// Where a pool's clients connect from and how they read.
#[derive(Clone, Copy)]
struct Clients {
    /// A loopback address of the pool's own, so that 10,000 clients do not
    /// run out of the ports of one.
    source: Ipv4Addr,
    kind: ClientKind,
}

/// The parent's handle on a pool process.
struct Pool {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Pool {
    /// `accounts`: client i filters to account `a{i % accounts}`.
    async fn start(
        url: &str,
        n: usize,
        Clients { source, kind }: Clients,
        accounts: Option<usize>,
    ) -> Pool {
        // WS_FANOUT_POOL_NICE runs the clients at that niceness, so that on a
        // small machine the server under test is not starved by them.
        let nice = std::env::var("WS_FANOUT_POOL_NICE").unwrap_or_else(|_| "0".into());
        let mut child = tokio::process::Command::new("nice")
            .args(["-n", nice.as_str()])
            .arg(std::env::current_exe().expect("exe"))
            .args([
                "--pool",
                url,
                &n.to_string(),
                &source.to_string(),
                kind.name(),
            ])
            .args(accounts.map(|a| a.to_string()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn pool");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut pool = Pool {
            child,
            stdin,
            lines,
        };
        assert_eq!(pool.read().await, "ready");
        pool
    }

    async fn read(&mut self) -> String {
        self.lines
            .next_line()
            .await
            .expect("pool stdout")
            .expect("pool exited")
    }

    async fn say(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("pool stdin");
        self.stdin.flush().await.expect("pool stdin");
    }

    async fn stop(mut self) {
        self.say("exit").await;
        let _ = self.child.wait().await;
    }
}

// ---------------------------------------------------------------- the baseline

/// How a baseline connection writes what the broadcast gives it.
#[derive(Clone, Copy)]
enum Writes {
    /// `send`: one write (and flush) per frame.
    EachFrame,
    /// `feed` up to 16 frames already waiting, then one flush: as callrelay
    /// batches a live session's writes, so the two do the same syscalls.
    Batched,
}

/// A minimal broadcast server: every connection forwards the broadcast.
async fn baseline(tx: broadcast::Sender<Utf8Bytes>, writes: Writes) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let mut rx = tx.subscribe();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut sink, mut stream) = ws.split();
                loop {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Ok(text) => match writes {
                                Writes::EachFrame => if sink.send(Message::Text(text)).await.is_err() { return },
                                Writes::Batched => {
                                    if sink.feed(Message::Text(text)).await.is_err() { return }
                                    for _ in 1..16 {
                                        match rx.try_recv() {
                                            Ok(more) => if sink.feed(Message::Text(more)).await.is_err() { return },
                                            Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                                            Err(_) => break,
                                        }
                                    }
                                    if sink.flush().await.is_err() { return }
                                }
                            },
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(_) => return,
                        },
                        m = stream.next() => if !matches!(m, Some(Ok(_))) { return },
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- the runs

struct Row {
    server: &'static str,
    clients: usize,
    rss_per_client_kib: f64,
    events: u64,
    deliveries_per_s: f64,
    lost_clients: u64,
}

/// Journals `count` events as fast as ingest takes them; returns the last seq.
async fn burst(ingest: &callrelay::ingest::IngestHandle, first: u64, count: u64) -> u64 {
    let acks: Vec<u64> = futures::stream::iter(first..first + count)
        .map(|n| {
            let ingest = ingest.clone();
            async move { ingest.submit(event(n)).await.expect("submit").seq }
        })
        .buffer_unordered(1024)
        .collect()
        .await;
    acks.into_iter().max().unwrap_or(0)
}

async fn throughput(
    server: &'static str,
    url: &str,
    clients: usize,
    events: u64,
    pool_clients: Clients,
    relay: &Relay,
    next: &mut u64,
) -> Row {
    eprintln!("{server}: connecting {clients} clients");
    let before = rss_kib();
    let mut pool = Pool::start(url, clients, pool_clients, None).await;
    eprintln!("{server}: {clients} connected; journaling {events} events");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib().saturating_sub(before) as f64 / clients as f64;
    let started = Instant::now();
    let last = burst(&relay.ctx.ingest, *next, events).await;
    *next += events;
    pool.say(&format!("until {last}")).await;
    let answer = pool.read().await;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("{server}: {answer} in {elapsed:.2} s");
    let parts: Vec<u64> = answer
        .split_whitespace()
        .skip(1)
        .filter_map(|p| p.parse().ok())
        .collect();
    let (frames, lost) = (parts[0], parts[1]);
    pool.stop().await;
    Row {
        server,
        clients,
        rss_per_client_kib: idle,
        events,
        deliveries_per_s: frames as f64 / elapsed,
        lost_clients: lost,
    }
}

/// What the paced runs (latency, filtered screens) share: the relay they
/// journal into, the next event's number, the commit times, where to
/// write the table of them for the pool, and the events per second.
struct Paced<'a> {
    relay: &'a Relay,
    next: &'a mut u64,
    commits: &'a Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
    dir: &'a std::path::Path,
    rate: u64,
}

async fn latency(url: &str, pool_clients: Clients, run: &mut Paced<'_>) -> String {
    let (relay, commits, dir, rate) = (run.relay, run.commits, run.dir, run.rate);
    let next = &mut *run.next;
    eprintln!("latency: {url}");
    let mut pool = Pool::start(url, latency_clients(), pool_clients, None).await;
    // `rate` events/s for 10 s: rate/100 events every 10 ms, each submitted on its own.
    let per_tick = (rate / 100).max(1);
    let events = per_tick * 1_000;
    pool.say(&format!("record {}", events + events / 10)).await;
    assert_eq!(pool.read().await, "recording");
    commits.lock().expect("commits").clear();
    let last = paced(relay, next, per_tick, event).await;
    pool.say(&format!("until {last}")).await;
    let done = pool.read().await;
    let v = latencies_at(&mut pool, commits, dir).await;
    pool.stop().await;
    let closed = done.split_whitespace().nth(2).unwrap_or("?");
    format!(
        "{} samples: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms \
         ({} samples without a commit time, {closed} clients closed)",
        v[0],
        v[1] as f64 / 1e3,
        v[2] as f64 / 1e3,
        v[3] as f64 / 1e3,
        v[4] as f64 / 1e3,
        v[5]
    )
}

/// Journals `per_tick` events every 10 ms for 10 s, each submitted on its
/// own, event `n` made by `make(n)`; returns the last seq.
async fn paced(
    relay: &Relay,
    next: &mut u64,
    per_tick: u64,
    make: impl Fn(u64) -> IncomingEvent + Copy + Send + 'static,
) -> u64 {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut last = 0;
    let mut inflight = Vec::new();
    for _ in 0..1_000 {
        tick.tick().await;
        for _ in 0..per_tick {
            let ingest = relay.ctx.ingest.clone();
            let n = *next;
            *next += 1;
            inflight.push(tokio::spawn(async move {
                ingest.submit(make(n)).await.expect("submit").seq
            }));
        }
    }
    for t in inflight {
        last = last.max(t.await.expect("submit task"));
    }
    last
}

/// The pool's commit → frame figures for what it recorded: samples, p50,
/// p99, p99.9, max (µs), samples without a commit time.
async fn latencies_at(
    pool: &mut Pool,
    commits: &Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
    dir: &std::path::Path,
) -> Vec<u64> {
    let path = dir.join("commits.txt");
    let table: String = commits
        .lock()
        .expect("commits")
        .iter()
        .map(|(s, t)| format!("{s} {t}\n"))
        .collect();
    std::fs::write(&path, table).expect("commit table");
    pool.say(&format!("latency {}", path.display())).await;
    let answer = pool.read().await;
    answer
        .split_whitespace()
        .skip(1)
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// `WS_FANOUT_FILTERED="clients:accounts"`: the filtered run's size, if any.
fn filtered_run() -> Option<(usize, usize)> {
    let v = std::env::var("WS_FANOUT_FILTERED").ok()?;
    let parsed = v.split_once(':').and_then(|(c, a)| {
        let (c, a): (usize, usize) = (c.trim().parse().ok()?, a.trim().parse().ok()?);
        (c > 0 && a > 0).then_some((c, a))
    });
    Some(parsed.unwrap_or_else(|| {
        panic!("WS_FANOUT_FILTERED: {v:?} is not \"clients:accounts\", both above 0")
    }))
}

/// The filtered screens: `clients` clients, client i filtered to account
/// `a{i % accounts}`, fed `rate` events/s for 10 s, event n of account
/// `a{n % accounts}`, as the latency run feeds them. What it measures is
/// this process's CPU (the relay's, and the commit stamping's) per event,
/// and whether each client got exactly its account's events.
#[allow(clippy::too_many_arguments)]
async fn filtered(
    url: &str,
    (clients, accounts): (usize, usize),
    pool_clients: Clients,
    run: &mut Paced<'_>,
) -> String {
    let (relay, commits, dir, rate) = (run.relay, run.commits, run.dir, run.rate);
    let next = &mut *run.next;
    eprintln!("filtered: {clients} clients over {accounts} accounts at {url}");
    let mut pool = Pool::start(url, clients, pool_clients, Some(accounts)).await;
    let per_tick = (rate / 100).max(1);
    let events = per_tick * 1_000;
    let first = *next;
    // Account k's events, and the clients filtered to it.
    let count_of = |k: u64| {
        let m = accounts as u64;
        let start = first + (k + m - first % m) % m;
        if start >= first + events {
            0
        } else {
            (first + events - 1 - start) / m + 1
        }
    };
    let clients_of = |k: usize| clients / accounts + usize::from(k < clients % accounts);
    let served = (0..accounts).filter(|&k| clients_of(k) > 0);
    let expected: u64 = served
        .clone()
        .map(|k| count_of(k as u64) * clients_of(k) as u64)
        .sum();
    let each_min = served
        .clone()
        .map(|k| count_of(k as u64))
        .min()
        .unwrap_or(0);
    let each_max = served.map(|k| count_of(k as u64)).max().unwrap_or(0);
    pool.say(&format!("record {}", each_max + each_max / 10 + 1))
        .await;
    assert_eq!(pool.read().await, "recording");
    // A session subscribes to the live events just after its upgrade
    // answer: the throughput runs' pause, so that none misses the first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    commits.lock().expect("commits").clear();
    let (user, sys) = cpu_us();
    let started = Instant::now();
    let accounts_u64 = accounts as u64;
    paced(relay, next, per_tick, move |n| {
        account_event(n, accounts_u64)
    })
    .await;
    let journaled = started.elapsed();
    // Frames still on their way once the last event is journaled are part
    // of its cost: the window ends when every frame is in, or at the timeout.
    pool.say(&format!("count {expected} 30")).await;
    let counted = pool.read().await;
    let window = started.elapsed();
    let (user_after, sys_after) = cpu_us();
    let (user, sys) = (user_after - user, sys_after - sys);
    let v = latencies_at(&mut pool, commits, dir).await;
    pool.stop().await;
    let c: Vec<u64> = counted
        .split_whitespace()
        .skip(1)
        .filter_map(|p| p.parse().ok())
        .collect();
    let (frames, closed, got_min, got_max) = (c[0], c[1], c[2], c[3]);
    let cpu = (user + sys) as f64;
    format!(
        "| {clients} | {accounts} | {events} in {:.2} s (+{:.2} s to the last frame) | \
         {:.1} s (user {:.1}, sys {:.1}) | {:.0} % | {:.0} µs | {frames} of {expected} | \
         {got_min}..{got_max} of {each_min}..{each_max} | {:.2} / {:.2} / {:.2} ms ({} samples, \
         {} without a commit time) | {closed} |",
        journaled.as_secs_f64(),
        (window - journaled).as_secs_f64(),
        cpu / 1e6,
        user as f64 / 1e6,
        sys as f64 / 1e6,
        cpu / window.as_micros() as f64 * 100.0,
        cpu / events as f64,
        v[1] as f64 / 1e3,
        v[2] as f64 / 1e3,
        v[4] as f64 / 1e3,
        v[0],
        v[5]
    )
}

/// WS_FANOUT_LATENCY_CLIENTS: the latency run's clients (default 1,000, the
/// issue's figure).
fn latency_clients() -> usize {
    std::env::var("WS_FANOUT_LATENCY_CLIENTS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000)
}

async fn bench() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[journal]\npath = {:?}\n[websocket]\nmax_clients = 20000\nclient_queue = 1000000\n",
        dir.path().join("journal").display().to_string()
    );
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, text).expect("config");
    let relay = Relay::start(Config::load(&path).expect("config"), path)
        .await
        .expect("relay");

    // Commit times (when the hub publishes, right after the fsync'd commit,
    // before any webhook is answered), and the same frames to the baseline.
    let (tx, _) = broadcast::channel::<Utf8Bytes>(65_536);
    let base_addr = baseline(tx.clone(), Writes::EachFrame).await;
    let batched_addr = baseline(tx.clone(), Writes::Batched).await;
    let commits: Arc<std::sync::Mutex<Vec<(u64, u64)>>> = Arc::default();
    {
        // A thread of its own, woken by the ingest thread's publish directly:
        // a task on the (busy) runtime would stamp commits late.
        let mut live = relay.ctx.hub.subscribe_live();
        let commits = commits.clone();
        std::thread::spawn(move || {
            loop {
                match live.blocking_recv() {
                    Ok(e) => {
                        commits.lock().expect("commits").push((e.seq, now_us()));
                        if let Ok(text) = Utf8Bytes::try_from(e.json.clone()) {
                            let _ = tx.send(text);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        });
    }
    let relay_url = format!("ws://{}/ws", relay.addr);
    let base_url = format!("ws://{base_addr}/");
    let batched_url = format!("ws://{batched_addr}/");
    let mut next = 1;
    let mut rows = Vec::new();
    let mut ip = 10u8;
    let mut source = || {
        ip += 1;
        Ipv4Addr::new(127, 0, 0, ip)
    };
    // WS_FANOUT_RUNS="clients:events,..." overrides the runs (for a quick look).
    let runs: Vec<(usize, u64)> = std::env::var("WS_FANOUT_RUNS")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|r| {
                    let (c, e) = r.split_once(':')?;
                    Some((c.parse().ok()?, e.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_else(|| vec![(1_000, 5_000), (10_000, 500)]);
    let servers = [
        ("callrelay", relay_url.as_str()),
        ("baseline", base_url.as_str()),
        ("baseline, batched", batched_url.as_str()),
    ];
    // The throughput runs use the first kind of client named.
    let kinds = ClientKind::from_env();
    let kind = kinds[0];
    for (clients, events) in runs {
        for (server, url) in servers {
            let row = throughput(
                server,
                url,
                clients,
                events,
                Clients {
                    source: source(),
                    kind,
                },
                &relay,
                &mut next,
            )
            .await;
            rows.push(row);
        }
    }
    // WS_FANOUT_RATE overrides the latency run's events/s (default 1,000).
    let rate: u64 = std::env::var("WS_FANOUT_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000);
    let mut latencies = Vec::new();
    let mut run = Paced {
        relay: &relay,
        next: &mut next,
        commits: &commits,
        dir: dir.path(),
        rate,
    };
    for &kind in &kinds {
        for (server, url) in servers {
            let clients = Clients {
                source: source(),
                kind,
            };
            let measured = latency(url, clients, &mut run).await;
            latencies.push((format!("{server}, {} clients", kind.name()), measured));
        }
    }
    let filtered_row = match filtered_run() {
        Some(size) => {
            let clients = Clients {
                source: source(),
                kind,
            };
            Some(filtered(&relay_url, size, clients, &mut run).await)
        }
        None => None,
    };

    println!("throughput, {} clients:", kind.name());
    println!("| server | clients | events | deliveries/s | RSS per idle client | clients lost |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} KiB | {} |",
            r.server, r.clients, r.events, r.deliveries_per_s, r.rss_per_client_kib, r.lost_clients
        );
    }
    println!();
    let nice = std::env::var("WS_FANOUT_POOL_NICE").unwrap_or_else(|_| "0".into());
    println!(
        "commit → frame at a client, ~{rate} events/s, {} clients (their process at nice {nice}):",
        latency_clients()
    );
    for (server, measured) in &latencies {
        println!("- {server}: {measured}");
    }
    if let Some(row) = filtered_row {
        println!();
        println!(
            "filtered screens, callrelay, ~{rate} events/s for 10 s, {} clients (client i: \
             `?account=a{{i % accounts}}`; CPU: this process, the relay, not the clients):",
            kind.name()
        );
        println!(
            "| clients | accounts | events | CPU | of one core | CPU per event | frames delivered \
             | per client (of expected) | commit → frame p50 / p99 / max | clients closed |"
        );
        println!("|---:|---:|---|---:|---:|---:|---:|---:|---|---:|");
        println!("{row}");
    }
    relay.shutdown();
    let _ = relay.wait().await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(i) = args.iter().position(|a| a == "--pool") {
        let url = args[i + 1].clone();
        let n = args[i + 2].parse().expect("n");
        let source = args[i + 3].parse().expect("source ip");
        let kind = ClientKind::parse(&args[i + 4]);
        let accounts = args.get(i + 5).map(|a| a.parse().expect("accounts"));
        runtime.block_on(pool(url, n, source, kind, accounts));
    } else {
        runtime.block_on(bench());
    }
}
