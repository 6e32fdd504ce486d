//! Loading a config file: reading it, expanding `${ENV}` and `${file:…}`
//! (each file read again at each load), deserializing it into [`Config`],
//! validating it and routing its connection sources through the proxies.
//!
//! Guarantees: a `Config` is returned only when no problem was found. Every
//! problem is placed in the file as written (spans in the expanded text are
//! mapped back); a file that cannot be read is one problem at 1:1 with the
//! system's reason, one that is not UTF-8 a problem where it stops being so.
//! Where an unset `${VAR}` or a `${file:…}` that cannot be used stands, its
//! own problem is reported and the later problems on its line, or quoting
//! it, are left out; any other problem of the expansion stops the load
//! before the text is deserialized.
use std::path::Path;

use toml::Spanned;

use super::wording::{syntax_problem, type_problem};
use super::{Config, ConfigError, DEFAULT_CONFIG, Problem, Validator, env, line_col, type_errors};
use crate::sources::proxy::ProxySettings;

/// The config file as a load read it, and where each `${NAME}` or
/// `${file:…}` replacement stood in it: a problem found after the load (a
/// reload's refusal) is placed in the file as written without expanding it
/// again, which would read every `${file:…}` again, on the caller's thread,
/// and could find another content by then.
#[derive(Clone, Debug)]
pub struct LoadedText {
    /// The file's text as read, before expansion.
    pub text: String,
    offsets: env::OffsetMap,
}

impl LoadedText {
    /// The line and column in the file as written of `offset`, a place in
    /// the expanded text (a span of the loaded config).
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.text, self.offsets.original_offset(offset))
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_text(path).map(|(config, _)| config)
    }

    /// [`Config::load`], with the text it read and where its `${…}` stood
    /// (where a later refusal is placed).
    pub fn load_with_text(path: &Path) -> Result<(Config, LoadedText), ConfigError> {
        Config::load_with_text_for(path, Loading::Start)
    }

    /// [`Config::load_with_text`] for a start or a reload, which say a
    /// missing file in words of their own.
    pub fn load_with_text_for(
        path: &Path,
        loading: Loading,
    ) -> Result<(Config, LoadedText), ConfigError> {
        let text = Config::read(path, loading)?;
        let (config, offsets) = Config::from_text_mapped(
            &path.display().to_string(),
            &text,
            &|name| std::env::var(name).ok(),
            &env::read_file,
            loading,
        )?;
        Ok((config, LoadedText { text, offsets }))
    }

    /// The config file's text, or why it cannot be read (as a problem at 1:1,
    /// or where the text stops being UTF-8).
    fn read(path: &Path, loading: Loading) -> Result<String, ConfigError> {
        let bytes = std::fs::read(path).map_err(|e| Config::unreadable(path, e, loading))?;
        String::from_utf8(bytes).map_err(|e| {
            // Placed at the first byte that is not UTF-8 (a Latin-1 `é` in a
            // comment): at 1:1, the reader had the whole file to search.
            let valid = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(&e.as_bytes()[..valid]);
            let (line, col) = line_col(&text, valid);
            ConfigError {
                file: path.display().to_string(),
                problems: vec![Problem {
                    line,
                    col,
                    message: "the config file is not UTF-8 text here (save it as UTF-8)".into(),
                }],
            }
        })
    }

    /// Why the config file cannot be read, as a problem at 1:1.
    fn unreadable(path: &Path, e: std::io::Error, loading: Loading) -> ConfigError {
        if e.kind() == std::io::ErrorKind::NotFound && loading == Loading::Reload {
            // A link whose file is gone: the link is there, its file is not.
            return gone_since_the_start(path, std::fs::read_link(path).ok());
        }
        let mut message = format!("cannot read the config file: {e}");
        // A relative path is read from the working directory, which a
        // newcomer starting the relay elsewhere does not think of. The way
        // to the demo config is for the default name only: whoever named
        // another file (a typo) has passed --config already.
        if e.kind() == std::io::ErrorKind::NotFound && path.is_relative() {
            let cwd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "the working directory".into());
            message.push_str(&not_found_hint(path, &cwd));
        }
        ConfigError::of_whole_file(path, message)
    }

    /// Parses, expands `${ENV}` with `lookup` and `${file:…}` from the disk
    /// (read again at each call: a reload sees a changed file), and
    /// validates `text`.
    pub fn from_text(
        file: &str,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::from_text_with_files(file, text, lookup, &env::read_file)
    }

    /// [`Config::from_text`], with `${file:…}` read by `read_file`.
    pub fn from_text_with_files(
        file: &str,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
        read_file: &env::ReadFile,
    ) -> Result<Config, ConfigError> {
        Config::from_text_mapped(file, text, lookup, read_file, Loading::Start)
            .map(|(config, _)| config)
    }

    /// [`Config::from_text_with_files`], with where each `${…}` stood in
    /// `text` (the config's spans are in the expanded text).
    fn from_text_mapped(
        file: &str,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
        read_file: &env::ReadFile,
        loading: Loading,
    ) -> Result<(Config, env::OffsetMap), ConfigError> {
        let mut expanded = env::expand_with_files(text, lookup, read_file);
        if loading == Loading::Reload {
            for &i in &expanded.unset_variables {
                if let Some((_, message)) = expanded.problems.get_mut(i) {
                    message.push_str(RESTART_FOR_NEW_VARIABLES);
                }
            }
        }
        let mut v = Validator::new(text);
        v.problems.clone_from(&expanded.problems);
        if expanded.problems.len() > expanded.unset.len() {
            return Err(v.into_error(file).unwrap_or_else(|| ConfigError {
                file: file.to_owned(),
                problems: vec![],
            }));
        }
        // An unset variable or a file that cannot be used in a string stays
        // as written (see `env::Expanded::unset`): what the later checks say on its line, or quoting it (a
        // check of another field that reads it: `tls.ca_file` against the
        // url's scheme), follows from that placeholder, not from the file,
        // and is left out; the rest of the file is checked as usual, so
        // `check` shows every problem at once.
        let unset_lines: Vec<usize> = expanded
            .problems
            .iter()
            .map(|(offset, _)| line_col(text, *offset).0)
            .collect();
        let mut later = Vec::new();
        // Spans from here on are in the expanded text: problems are placed in
        // the file the user wrote by mapping them back.
        let config = match toml::from_str::<Config>(&expanded.text) {
            Ok(mut config) => {
                let mut found = Validator::over_expansion(&expanded, text);
                config.validate(&mut found);
                config.route_through_proxies(lookup, &mut found);
                later.extend(found.problems.into_iter().map(|(offset, message)| {
                    (
                        expanded.original_offset(offset),
                        expanded.redact(&message, text),
                    )
                }));
                Some(config)
            }
            Err(first) => {
                let errors = type_errors::every_type_error::<Config>(&expanded.text);
                if errors.is_empty() {
                    // A syntax error: nothing after it can be read.
                    later.push(syntax_problem(&expanded, text, &first));
                }
                later.extend(errors.iter().map(|e| type_problem(&expanded, text, e)));
                None
            }
        };
        later.retain(|(offset, message)| {
            !unset_lines.contains(&line_col(text, *offset).0)
                && !expanded
                    .unset
                    .iter()
                    .any(|written| message.contains(written.as_str()))
        });
        v.problems.extend(later);
        match (v.into_error(file), config) {
            (None, Some(config)) => Ok((config, expanded.offset_map())),
            (error, _) => Err(error.unwrap_or_else(|| ConfigError {
                file: file.to_owned(),
                problems: vec![],
            })),
        }
    }

    /// Decides, once per load, which proxy (if any) each connection source
    /// goes through: a changed route restarts the source on reload.
    fn route_through_proxies(
        &mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
        v: &mut Validator,
    ) {
        let proxies = ProxySettings::resolve(&self.proxy, lookup, v);
        let mut route = |account: &Spanned<String>, url: &Spanned<String>| {
            proxies.route_for(url.get_ref()).unwrap_or_else(|why| {
                let message = format!("{}: {why}", v.shown(account));
                v.error(url.span(), message);
                None
            })
        };
        for source in &mut self.voip24h {
            let source = source.get_mut();
            source.proxy = route(&source.account, &source.url);
        }
        for source in &mut self.sprecord {
            let source = source.get_mut();
            source.proxy = route(&source.account, &source.url);
        }
    }
}

/// Why a config file is read: a missing file is said for a relay that
/// starts (how to name one) or for one that runs (put it back), and an
/// unset variable for one that runs with [`RESTART_FOR_NEW_VARIABLES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loading {
    Start,
    Reload,
}

/// Said after a reload's "environment variable `X` is not set": the
/// variable is most often one just added to the unit's environment file,
/// which a reload does not read, and the refusal alone sent operators
/// looking for a typo. It may be a typo all the same (`${CARESOFT_SECRT}`):
/// a restart then stops the running relay and its `ExecStartPre=` check
/// refuses the file, leaving the unit down, so the check comes first.
const RESTART_FOR_NEW_VARIABLES: &str = "; a reload keeps the environment the relay started \
     with: systemd reads the environment file (`EnvironmentFile=`, /etc/callrelay/env) only at \
     start, so a variable added there since needs a restart (`systemctl restart callrelay`), \
     after checking it with the unit's environment (deploy/README.md §3's `systemd-run … \
     callrelay check`): a restart whose check fails leaves the relay down";

/// The refusal of a reload whose config file is no longer there (or is a
/// link, to `link_to`, whose file is not). The advice a start gets
/// (`--config`, the demo config in the repository) is no use to a relay
/// running under systemd (newcomer's walk, 2026-12-06).
fn gone_since_the_start(path: &Path, link_to: Option<std::path::PathBuf>) -> ConfigError {
    let what = match &link_to {
        Some(target) => format!(
            "the config file this relay was started with is a link to {}, which is gone",
            target.display()
        ),
        None => "the config file this relay was started with is gone".to_owned(),
    };
    let message = match (path.is_relative(), std::env::current_dir()) {
        (false, _) => format!("{what}: put it back, or a fixed copy, and reload again"),
        (true, Ok(cwd)) => format!(
            "{what} (looked in {}): put it back, or a fixed copy, and reload again",
            cwd.display()
        ),
        // Putting the file back cannot help: the relay's own working
        // directory was removed, and only a start finds the new one.
        (true, Err(_)) => format!(
            "{what}, and so is the working directory the relay was started in: put the file back and restart the relay"
        ),
    };
    ConfigError::of_whole_file(path, message)
}

/// What a relative config path that is not found is told: where it was
/// looked for, and, for the default name only, how to name one (whoever
/// named another file, a typo, has passed `--config` already).
pub(super) fn not_found_hint(path: &Path, cwd: &str) -> String {
    let mut hint = format!(" (looked in {cwd})");
    if path == Path::new(DEFAULT_CONFIG) {
        hint.push_str("; pass --config FILE or set CALLRELAY_CONFIG, or start the relay in the repository's top directory, whose relay.toml is the demo config");
    }
    hint
}
