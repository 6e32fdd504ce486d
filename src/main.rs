//! The `callrelay` command line: `run` (the default), `check`, `tail`.
//!
//! Errors reach the user here, as plain messages and an exit code; never a
//! panic or a backtrace for bad input or bad config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use callrelay::config::Config;
use callrelay::sinks::websocket::tail::{self, TailOptions};

/// mimalloc instead of glibc malloc: every event allocates its parsed payload
/// on an HTTP worker and frees it on the journal writer, and glibc's
/// cross-thread frees and `malloc_consolidate` were a measurable share of the
/// ingest profile (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "callrelay",
    version,
    about = "Relays telephony vendors' call and CRM events as one deduplicated, durable CloudEvents stream to Kafka and WebSocket clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (for `run` when no subcommand is given).
    #[arg(
        long,
        global = true,
        env = "CALLRELAY_CONFIG",
        default_value = "relay.toml"
    )]
    config: PathBuf,
    /// Log format: human (default) or json.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log level (trace, debug, info, warn, error, off) or filter (e.g. `callrelay=debug,info`); `RUST_LOG` wins when set.
    #[arg(long, global = true, value_parser = log_filter)]
    log_level: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the config: prints every problem as FILE:LINE:COL: message; exit 1 if any.
    Check,
    /// Print live events from a running relay, one JSON line each.
    Tail {
        /// The relay's WebSocket URL.
        #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
        url: String,
        /// Bearer token (or env CALLRELAY_WS_TOKEN).
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
}

/// A log level or filter that logging would not honour as meant.
#[derive(Debug, thiserror::Error)]
enum LogFilterError {
    #[error(
        "{0:?} is not a log level (trace, debug, info, warn, error, off) or a filter such as `callrelay=debug,info`"
    )]
    NotALevel(String),
    #[error("{value:?} is not a valid log filter: {reason}")]
    BadFilter { value: String, reason: String },
}

/// Checks a `--log-level` or `RUST_LOG` value and returns it as EnvFilter
/// reads it. EnvFilter takes a lone word that is not a level as a target name,
/// so `warning` or a typo like `debg` would silently turn every log line off:
/// `warning` means `warn`, and any other lone word must be a level.
fn log_filter(value: &str) -> Result<String, LogFilterError> {
    let value = value.trim();
    let normalized = value
        .split(',')
        .map(|directive| {
            let directive = directive.trim();
            match directive.rsplit_once('=') {
                Some((target, level)) if level.eq_ignore_ascii_case("warning") => {
                    format!("{target}=warn")
                }
                None if directive.eq_ignore_ascii_case("warning") => "warn".to_owned(),
                _ => directive.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if !normalized.contains(['=', ','])
        && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(&normalized))
    {
        return Err(LogFilterError::NotALevel(value.to_owned()));
    }
    tracing_subscriber::EnvFilter::try_new(&normalized).map_err(|e| LogFilterError::BadFilter {
        value: value.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(normalized)
}

/// The filter in force: `RUST_LOG` when set (and not empty), else
/// `--log-level` (already checked by clap), else `default`.
fn logging_filter(
    level: Option<&str>,
    default: &str,
) -> Result<tracing_subscriber::EnvFilter, LogFilterError> {
    let chosen = match std::env::var("RUST_LOG") {
        Ok(rust_log) if !rust_log.trim().is_empty() => log_filter(&rust_log)?,
        _ => level.unwrap_or(default).to_owned(),
    };
    // Both sources went through `log_filter`, so this parses.
    Ok(tracing_subscriber::EnvFilter::try_new(&chosen)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)))
}

/// Crates that log what goes over the wire at trace level: tungstenite logs
/// every frame (the Voip24h `sign` frame carries the API key) and the client
/// handshake request (`tail --token`'s Authorization header), reqwest can log
/// connection bytes, and the socket.io, engine.io, hyper and h2 stacks sit on
/// the same traffic. Secrets never appear in logs, whatever RUST_LOG or
/// `--log-level` asks, so these are held at debug (none of them logs a
/// payload or header there).
const WIRE_LOGGING_CRATES: [&str; 8] = [
    "tungstenite",
    "tokio_tungstenite",
    "rust_socketio",
    "rust_engineio",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
];

/// Whether an event may be logged at all. A filter layer of its own rather
/// than directives added to the user's: `tungstenite::protocol=trace` is more
/// specific than an added `tungstenite=debug` and would win over it. Events
/// bridged from the `log` crate carry their crate's target, so it holds for
/// them too.
fn not_wire_trace(metadata: &tracing::Metadata<'_>) -> bool {
    *metadata.level() <= tracing::Level::DEBUG
        || !WIRE_LOGGING_CRATES.iter().any(|krate| {
            metadata
                .target()
                .strip_prefix(krate)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
}

/// Sets up logging, or says why `RUST_LOG` is refused (exit 2, as clap does
/// for a bad `--log-level`).
fn init_logging(format: LogFormat, level: Option<&str>, default: &str) -> Result<(), ExitCode> {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = logging_filter(level, default).map_err(|e| {
        eprintln!("callrelay: invalid RUST_LOG: {e}");
        ExitCode::from(2)
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: the journal, a file or
        // a pipe would keep them as escape sequences in the text.
        .with_ansi(std::io::stderr().is_terminal());
    let wire = tracing_subscriber::filter::filter_fn(not_wire_trace);
    match format {
        LogFormat::Human => builder.finish().with(wire).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .finish()
            .with(wire)
            .init(),
    }
    Ok(())
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
        Command::Check => match Config::load(&cli.config) {
            Ok(_) => {
                println!("{}: ok", cli.config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run => {
            if let Err(code) = init_logging(cli.log_format, cli.log_level.as_deref(), "info") {
                return code;
            }
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("callrelay: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(callrelay::app::run_daemon(&cli.config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("callrelay: {e}");
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
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("callrelay: cannot start the runtime: {e}");
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
            match runtime.block_on(tail::run(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("callrelay tail: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
