//! The `callrelay` command line: `run` (the default), `check`, `tail`,
//! `compact`.
//!
//! Errors reach the user here, as plain messages and an exit code; never a
//! panic or a backtrace for bad input or bad config.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use callrelay::config::Config;
use callrelay::logging::{self, LogFormat, log_filter};
use callrelay::sinks::websocket::tail::{self, TailOptions};
use callrelay::worker_threads;

/// How long the daemon waits, after its stop is complete, for work it
/// abandoned (a blocking Kafka metadata request, a Kafka producer's
/// release waiting on a name lookup) before exiting anyway.
const LEFTOVER_WORK_BOUND: Duration = Duration::from_secs(1);

/// mimalloc instead of glibc malloc: every event allocates its parsed payload
/// on an HTTP worker and frees it on the journal writer, and glibc's
/// cross-thread frees and `malloc_consolidate` were a measurable share of the
/// ingest profile (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// No `Debug`: `Command::Tail` holds a token, and a stray `{:?}` must not print it.
#[derive(Parser)]
#[command(
    name = "callrelay",
    version = callrelay::VERSION,
    about = "Relays telephony vendors' call and CRM events as one deduplicated, durable CloudEvents stream to Kafka and WebSocket clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file, for `run` (also when no subcommand is given), `check` and `compact`; `tail` reads none.
    #[arg(
        long,
        global = true,
        env = "CALLRELAY_CONFIG",
        default_value = callrelay::config::DEFAULT_CONFIG
    )]
    config: PathBuf,
    /// Log format: human (default) or json.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log level (trace, debug, info, warn, error, off) or filter (e.g. `callrelay=debug,info`); `RUST_LOG` wins when set.
    #[arg(long, global = true, value_parser = log_filter)]
    log_level: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the config without network access: prints every problem as FILE:LINE:COL: message and exits 1, or FILE: ok (a set RUST_LOG or TOKIO_WORKER_THREADS is checked too).
    Check,
    /// Print live events from a running relay, one JSON line each.
    Tail {
        /// The relay's WebSocket URL.
        #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
        url: String,
        /// Bearer token, sent as `Authorization: Bearer`; the environment keeps it out of `ps`.
        #[arg(long, env = "CALLRELAY_WS_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Only these types (glob, e.g. `call.*`); repeatable or comma-separated.
        #[arg(long = "type", value_delimiter = ',')]
        types: Vec<String>,
        /// Only these vendors; repeatable or comma-separated.
        #[arg(long = "vendor", value_delimiter = ',')]
        vendors: Vec<String>,
        /// Start after this seq (replays what the journal still holds).
        #[arg(long)]
        since: Option<u64>,
        /// PEM file of extra CA certificates to trust for a wss:// url.
        #[arg(long, value_name = "PEM")]
        ca_file: Option<std::path::PathBuf>,
    },
    /// Shrink the journal file to what it holds, with the relay stopped (after an outage grew it): no event, cursor or dedup entry changes.
    Compact,
}

/// Stderr for a line said outside the log (`check`'s output, what comes
/// before logging starts or after it is hidden): under systemd the line
/// starts with its level's prefix, so a refused `RUST_LOG` or a runtime that
/// cannot start is in `journalctl -p err`, not filed as info.
fn stderr_at(level: tracing::Level) -> logging::journald::Prefixed<std::io::Stderr> {
    let journald = logging::journald::stderr_is_journald();
    logging::journald::Prefixed::new(
        std::io::stderr(),
        journald.then(|| logging::journald::level_prefix(level)),
    )
}

/// Says an error on stderr, outside the log. Not `eprintln!`: it panics
/// (exit 101) on a stderr that cannot be written (`2> /dev/full`, a reader
/// gone); the exit code says what happened whatever became of the text.
fn say_error(text: std::fmt::Arguments) {
    let _ = writeln!(stderr_at(tracing::Level::ERROR), "{text}");
}

/// Says why `run` stops, once, in the log's own format (a JSON log stays
/// JSON); plainly only when the log level hides errors.
fn say_fatal(lines: Vec<String>) {
    let logged = tracing::enabled!(tracing::Level::ERROR);
    for line in lines {
        if logged {
            tracing::error!("{line}");
        } else {
            say_error(format_args!("callrelay: {line}"));
        }
    }
}

/// Sets up logging, or says why `RUST_LOG` is refused (exit 2, as clap does
/// for a bad `--log-level`).
fn init_logging(format: LogFormat, level: Option<&str>, default: &str) -> Result<(), ExitCode> {
    logging::init(format, level, default).map_err(|e| {
        say_error(format_args!("callrelay: invalid RUST_LOG: {e}"));
        ExitCode::from(2)
    })
}

/// The command line. An empty `CALLRELAY_CONFIG` (`CALLRELAY_CONFIG=` in an
/// env file) counts as unset, so the default `relay.toml` applies instead of
/// clap's "a value is required for '--config'".
fn parse_cli() -> Cli {
    let mut command = Cli::command();
    if std::env::var_os("CALLRELAY_CONFIG").is_some_and(|v| v.is_empty()) {
        command = command.mut_arg("config", |arg| arg.env(None));
    }
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    let cli = parse_cli();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => {
            // Not `println!`/`eprintln!`: they panic (exit 101) on output that
            // cannot be written (`| true`, `> /dev/full`); the exit code
            // says whether the config is good whatever became of the text.
            // Under systemd (the unit's `ExecStartPre`) each line carries
            // its level, so a config refused at start is in `journalctl -p err`.
            let config = Config::load_with_text(&cli.config);
            match &config {
                Err(e) => say_error(format_args!("{e}")),
                // Said, and still ok: the CONTRACT allows what they name.
                Ok((config, text)) => {
                    for line in config.warning_lines(&cli.config, text) {
                        let _ = writeln!(stderr_at(tracing::Level::WARN), "{line}");
                    }
                }
            }
            // `run` refuses to start on them, so they are problems of this setup too.
            let rust_log = logging::check_rust_log();
            if let Err(e) = &rust_log {
                say_error(format_args!("RUST_LOG: {e}"));
            }
            let threads = worker_threads::from_env();
            if let Err(e) = &threads {
                say_error(format_args!("{}: {e}", worker_threads::VAR));
            }
            if config.is_ok() && rust_log.is_ok() && threads.is_ok() {
                let _ = writeln!(std::io::stdout(), "{}: ok", cli.config.display());
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Command::Compact => compact(&cli.config, cli.log_format, cli.log_level.as_deref()),
        Command::Run => {
            if let Err(code) = init_logging(cli.log_format, cli.log_level.as_deref(), "info") {
                return code;
            }
            if let Err(e) = callrelay::no_core::keep_secrets_out_of_cores() {
                tracing::warn!(error = %e, "cannot mark the process as not dumpable: a core dump would hold its secrets");
            }
            let threads = match worker_threads::from_env() {
                Ok(threads) => threads,
                Err(e) => {
                    say_fatal(vec![format!("{}: {e}", worker_threads::VAR)]);
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads.get())
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    say_error(format_args!("callrelay: cannot start the runtime: {e}"));
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(callrelay::app::run_daemon(&cli.config));
            // What is still running is work the stop abandoned after making
            // everything durable (a Kafka metadata request that may take its
            // 10 s timeout, a producer's release behind a name lookup):
            // dropping the runtime would wait for it.
            runtime.shutdown_timeout(LEFTOVER_WORK_BOUND);
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // A config's problems one line each, as `check` prints them.
                    say_fatal(match &e {
                        callrelay::app::RunError::Config(problems) => problems.lines(),
                        other => vec![other.to_string()],
                    });
                    ExitCode::FAILURE
                }
            }
        }
        Command::Tail {
            url,
            token,
            types,
            vendors,
            since,
            ca_file,
        } => {
            if let Err(code) = init_logging(cli.log_format, cli.log_level.as_deref(), "warn") {
                return code;
            }
            // Its environment holds the token (`CALLRELAY_WS_TOKEN`), its
            // memory the events it printed: callers' numbers.
            if let Err(e) = callrelay::no_core::keep_secrets_out_of_cores() {
                tracing::warn!(error = %e, "cannot mark the process as not dumpable: a core dump would hold its token");
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    say_error(format_args!("callrelay: cannot start the runtime: {e}"));
                    return ExitCode::FAILURE;
                }
            };
            let options = TailOptions {
                url,
                token,
                types,
                vendors,
                since,
                ca_file,
            };
            if let Err(e) = tail::exit_at_stop_signals() {
                tracing::warn!(
                    "{e}; a signal without a listener ends tail by the signal, not with exit 0"
                );
            }
            let result = runtime.block_on(tail::run(options));
            // A name lookup the upgrade's time limit gave up on may still be
            // in the blocking pool (getaddrinfo, 10–30 s with a resolver
            // that does not answer): dropping the runtime would wait for it,
            // and tail has nothing left that is worth waiting for (every
            // line it printed is flushed).
            runtime.shutdown_background();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    say_error(format_args!("callrelay tail: {e}"));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `callrelay compact`: the config loaded as `run` and `check` load it, the
/// journal at its `journal.path` compacted; one line on stdout, or the
/// reason on stderr and exit 1.
fn compact(
    config_path: &std::path::Path,
    log_format: LogFormat,
    log_level: Option<&str>,
) -> ExitCode {
    // Info: a journal not closed cleanly is checked first, minutes on a slow
    // disk, and the check says how far it got at that level.
    if let Err(code) = init_logging(log_format, log_level, "info") {
        return code;
    }
    // Its memory holds the config's secrets and the journal's pages.
    if let Err(e) = callrelay::no_core::keep_secrets_out_of_cores() {
        tracing::warn!(error = %e, "cannot mark the process as not dumpable: a core dump would hold its secrets");
    }
    let config = match Config::load(config_path) {
        Ok(config) => config,
        Err(e) => {
            say_error(format_args!("{e}"));
            return ExitCode::FAILURE;
        }
    };
    match callrelay::journal::compact(config.journal_options()) {
        Ok(done) => {
            let _ = writeln!(std::io::stdout(), "{done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            say_error(format_args!("callrelay compact: {e}"));
            ExitCode::FAILURE
        }
    }
}
