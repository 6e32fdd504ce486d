//! A tansu broker (a Kafka-compatible broker, crates.io `tansu`) started on
//! 127.0.0.1 by the Kafka tests and the Kafka benchmark, killed on drop.
//! `scripts/test.sh` installs tansu when it is missing.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Tansu {
    child: Option<Child>,
    pub port: u16,
    /// The port clients are told to use (metadata), when not `port`: a proxy's.
    advertised_port: Option<u16>,
    /// Clients must log in (SASL SCRAM) as a user made by `create_user`.
    authentication: bool,
    dir: PathBuf,
    storage: String,
}

/// The tansu binary: `$TANSU`, else `tansu` on PATH, else `~/.cargo/bin/tansu`.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU") {
        return PathBuf::from(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("tansu");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let candidate = home.join(".cargo/bin/tansu");
    assert!(
        candidate.is_file(),
        "tansu (the Kafka-compatible broker these tests run) is not installed: \
         run `cargo install tansu --version 0.6.0 --locked --features dynostore,libsql` \
         (scripts/test.sh does it; another version speaks another command line), or point $TANSU at the binary"
    );
    candidate
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Tansu {
    /// In-memory storage: fast, lost when the broker stops.
    pub fn memory(dir: &Path) -> Tansu {
        Tansu::start(dir, "memory://tansu/", free_port())
    }

    /// SQLite storage in `dir` (survives SIGKILL).
    pub fn sqlite(dir: &Path) -> Tansu {
        Tansu::start(dir, "sqlite://tansu.db", free_port())
    }

    /// In-memory storage, listening on `port` but advertising
    /// `advertised_port` (a proxy in front of it) to clients.
    pub fn memory_behind(dir: &Path, port: u16, advertised_port: u16) -> Tansu {
        let mut t = Tansu {
            child: None,
            port,
            advertised_port: Some(advertised_port),
            authentication: false,
            dir: dir.to_path_buf(),
            storage: "memory://tansu/".to_owned(),
        };
        t.spawn();
        t
    }

    fn start(dir: &Path, storage: &str, port: u16) -> Tansu {
        let mut t = Tansu {
            child: None,
            port,
            advertised_port: None,
            authentication: false,
            dir: dir.to_path_buf(),
            storage: storage.to_owned(),
        };
        t.spawn();
        t
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn advertised_url(&self) -> String {
        format!(
            "tcp://127.0.0.1:{}",
            self.advertised_port.unwrap_or(self.port)
        )
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .expect("tansu log file");
        let child = Command::new(binary())
            .args(["broker", "--listener-url", &self.url()])
            .args(["--advertised-listener-url", &self.advertised_url()])
            .args(["--storage-engine", &self.storage])
            .args(self.authentication.then_some("--authentication"))
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "tansu exited at start ({status}); see {}",
                    self.dir.join("tansu.log").display()
                );
            }
            assert!(Instant::now() < deadline, "tansu did not listen within 30s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `tansu topic create NAME --partitions N`.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let partitions = partitions.to_string();
        self.cli(&["topic", "create", name, "--partitions", &partitions]);
    }

    /// Runs `tansu ARGS --broker URL` against this broker; panics with its output on failure.
    fn cli(&self, args: &[&str]) {
        let out = Command::new(binary())
            .args(args)
            .args(["--broker", &self.url()])
            .output()
            .expect("run the tansu command line");
        assert!(
            out.status.success(),
            "tansu {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `tansu user create NAME PASSWORD` (SCRAM-SHA-512). Before
    /// `require_authentication`: the broker then refuses anyone not logged in.
    pub fn create_user(&self, name: &str, password: &str) {
        self.cli(&["user", "create", "--mechanism", "scram512", name, password]);
    }

    /// Restarts on the same storage (sqlite keeps users and topics) with
    /// client authentication required.
    pub fn require_authentication(&mut self) {
        self.authentication = true;
        self.restart();
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill9();
    }
}
