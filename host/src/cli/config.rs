//! `provisio serve --config FILE` (or `PROVISIO_CONFIG`): a TOML file whose keys are the long options of
//! `serve` (`listen = "0.0.0.0:8080"`, `data-dir = "/var/lib/provisio"`, …).
//!
//! Precedence: a flag on the command line, then its environment variable, then the file, then the built-in
//! default. The file's values become the defaults of the `serve` arguments, so clap applies the order and
//! every value goes through the same parser as the flag. An unknown key or a bad value stops the start
//! with `FILE:LINE: KEY: reason`.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;

use clap::{CommandFactory, FromArgMatches};

use super::Cli;

/// The keys a file may not set: they are not settings of the service.
const NOT_SETTINGS: &[&str] = &["config", "help", "version"];

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The key, when the problem is one key's.
    pub key: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}:{}: {key}: {}", self.file, self.line, self.reason),
            None => write!(f, "{}:{}: {}", self.file, self.line, self.reason),
        }
    }
}

/// One valid setting of a file: the long option it sets and the value, as the flag would take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The long option (`data-dir`).
    pub key: String,
    /// The value as on the command line.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// The `serve` subcommand's grammar.
fn serve_command() -> clap::Command {
    Cli::command()
        .find_subcommand("serve")
        .cloned()
        .unwrap_or_else(|| clap::Command::new("serve"))
}

/// The keys a file may set: every long option of `serve` but `--config` and `--help`.
pub fn known_keys() -> Vec<String> {
    serve_command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|l| !NOT_SETTINGS.contains(&l.as_str()))
        .collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Why clap refused a value, without its usage text.
fn reason(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        return format!("must be one of: {}", valid.join(", "));
    }
    let rendered = e.render().to_string();
    rendered
        .lines()
        .next()
        .unwrap_or("invalid value")
        .trim_start_matches("error: ")
        .to_string()
}

/// Parses and checks a file's text: every key known, every value accepted by its option's parser. All
/// problems are reported, not just the first.
pub fn parse(file: &str, text: &str) -> Result<Vec<Setting>, Vec<ConfigError>> {
    type Table = std::collections::BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;
    let table: Table = toml::from_str(text).map_err(|e| {
        vec![ConfigError {
            file: file.to_string(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            key: None,
            reason: e.message().trim().to_string(),
        }]
    })?;
    let serve = serve_command();
    let known = known_keys();
    let mut settings = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in &table {
        let line = line_of(text, key.span().start);
        let error = |reason: String| ConfigError {
            file: file.to_string(),
            line,
            key: Some(key.get_ref().clone()),
            reason,
        };
        let Some(arg) = serve
            .get_arguments()
            .find(|a| a.get_long() == Some(key.get_ref().as_str()) && !NOT_SETTINGS.contains(&key.get_ref().as_str()))
        else {
            errors.push(error(format!("unknown key; the keys are: {}", known.join(", "))));
            continue;
        };
        let text_value = match value.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                errors.push(error(format!(
                    "expected a string, a number or a boolean, found {}",
                    other.type_str()
                )));
                continue;
            }
        };
        // The option's own parser, in a command of its own (the other options' rules play no part here).
        let alone = clap::Command::new("serve")
            .no_binary_name(true)
            .arg(arg.clone().requires(clap::builder::Resettable::<clap::Id>::Reset));
        match alone.try_get_matches_from([format!("--{}={text_value}", key.get_ref())]) {
            Ok(_) => settings.push(Setting {
                key: key.get_ref().clone(),
                value: text_value,
                line,
            }),
            Err(e) => errors.push(error(format!("{text_value:?}: {}", reason(&e)))),
        }
    }
    if errors.is_empty() {
        Ok(settings)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// Reads and checks a file.
pub fn load(path: &Path) -> Result<Vec<Setting>, Vec<ConfigError>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: file.clone(),
            line: 0,
            key: None,
            reason: format!("cannot read the file: {e}"),
        }]
    })?;
    parse(&file, &text)
}

/// The command line's grammar with a file's settings as the defaults of `serve`'s options. The TLS
/// options' pairing (`requires`) is checked after the merge ([`super::ServeArgs::check`]), since one of a
/// pair may come from the file and the other from a flag.
pub fn with_settings(settings: &[Setting]) -> clap::Command {
    Cli::command().mut_subcommand("serve", |mut serve| {
        if settings.is_empty() {
            return serve;
        }
        // With a file, a pair's other half may be in it: the pairing is checked after the merge.
        let ids: Vec<clap::Id> = serve.get_arguments().map(|a| a.get_id().clone()).collect();
        for id in ids {
            serve = serve.mut_arg(id, |a| a.requires(clap::builder::Resettable::<clap::Id>::Reset));
        }
        for setting in settings {
            let id = serve
                .get_arguments()
                .find(|a| a.get_long() == Some(setting.key.as_str()))
                .map(|a| a.get_id().clone());
            if let Some(id) = id {
                // clap keeps defaults as `&'static str`; a file's few values live for the process anyway.
                let value: &'static str = Box::leak(setting.value.clone().into_boxed_str());
                serve = serve.mut_arg(id, |a| a.default_value(value));
            }
        }
        serve
    })
}

/// What `main` does with the command line.
pub enum Parsed {
    /// Run this.
    Run(Box<Cli>),
    /// The configuration file is unusable: these problems.
    BadConfig(Vec<ConfigError>),
}

/// Parses the command line; for `serve --config FILE` (or `PROVISIO_CONFIG`), again with the file's settings
/// under the flags and the environment. Usage errors end the process as clap does (exit code 2).
pub fn parse_command_line<I, T>(args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let first = Cli::command().get_matches_from(args.clone());
    let config = first
        .subcommand_matches("serve")
        .and_then(|m| m.get_one::<std::path::PathBuf>("config").cloned());
    let matches = match config {
        None => first,
        Some(path) => match load(&path) {
            Ok(settings) => with_settings(&settings).get_matches_from(args),
            Err(errors) => return Parsed::BadConfig(errors),
        },
    };
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => Parsed::Run(Box::new(cli)),
        Err(e) => e.exit(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;

    fn serve_args(settings: &[Setting], argv: &[&str]) -> super::super::ServeArgs {
        let mut full = vec!["provisio", "serve"];
        full.extend_from_slice(argv);
        let matches = with_settings(settings).try_get_matches_from(full).expect("parse");
        match Cli::from_arg_matches(&matches).expect("cli").command {
            Command::Serve(args) => args,
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn retention_keys_and_the_old_name_of_the_job_logs_one() {
        let settings = parse(
            "p.toml",
            "job-retention-days = 7\nretention-audit-days = 365\nretention-deliveries-days = 14\n",
        )
        .expect("valid");
        let args = serve_args(&settings, &[]);
        assert_eq!(args.job_retention_days, Some(7));
        assert_eq!(args.retention_job_logs_days, None);
        assert_eq!((args.retention_events_days, args.retention_audit_days), (30, 365));
        assert_eq!(args.retention_deliveries_days, 14);
        let defaults = serve_args(&[], &[]);
        assert_eq!(defaults.retention_deliveries_days, 30);
        let args = serve_args(
            &settings,
            &["--retention-job-logs-days", "9", "--retention-events-days", "3"],
        );
        assert_eq!(
            args.retention_job_logs_days.or(args.job_retention_days),
            Some(9),
            "the new name wins"
        );
        assert_eq!(args.retention_events_days, 3);
        let args = serve_args(&settings, &["--retention-deliveries-days", "2"]);
        assert_eq!(args.retention_deliveries_days, 2, "the flag beats the file");
        let errors = parse("p.toml", "retention-deliveries-days = 0\n").unwrap_err();
        assert!(
            errors[0]
                .to_string()
                .starts_with("p.toml:1: retention-deliveries-days: \"0\": "),
            "{}",
            errors[0]
        );
        let errors = parse("p.toml", "retention-events-days = 0\n").unwrap_err();
        assert!(
            errors[0]
                .to_string()
                .starts_with("p.toml:1: retention-events-days: \"0\": "),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn the_whole_grammar_is_consistent() {
        // clap's own checks of every command (unique argument names, valid requirements), which otherwise
        // run only when that command is used.
        Cli::command().debug_assert();
    }

    #[test]
    fn every_serve_option_is_a_key() {
        let keys = known_keys();
        for key in [
            "listen",
            "data-dir",
            "database-url",
            "log-format",
            "job-retention-days",
            "retention-job-logs-days",
            "retention-events-days",
            "retention-audit-days",
            "retention-deliveries-days",
            "tls-cert",
            "tls-key",
            "client-ca",
            "proxy-rate-limit",
            "proxy-max-in-flight",
            "shutdown-grace",
            "quarantine-probe-seconds",
        ] {
            assert!(keys.contains(&key.to_string()), "{key} missing from {keys:?}");
        }
        assert!(!keys.contains(&"config".to_string()));
    }

    #[test]
    fn parses_values_of_every_kind_with_their_lines() {
        let text = "# Provisio\nlisten = \"0.0.0.0:9000\"\n\njob-retention-days = 7\nproxy-rate-limit = 2.5\nlog-format = \"json\"\n";
        let settings = parse("p.toml", text).expect("valid");
        assert_eq!(
            settings
                .iter()
                .map(|s| (s.key.as_str(), s.value.as_str(), s.line))
                .collect::<Vec<_>>(),
            vec![
                ("job-retention-days", "7", 4),
                ("listen", "0.0.0.0:9000", 2),
                ("log-format", "json", 6),
                ("proxy-rate-limit", "2.5", 5),
            ]
        );
    }

    #[test]
    fn the_quarantine_probe_interval_comes_from_the_file() {
        let settings = parse("p.toml", "quarantine-probe-seconds = 1\n").expect("valid");
        assert_eq!(settings[0].key, "quarantine-probe-seconds");
        assert_eq!(settings[0].value, "1");
        let errors = parse("p.toml", "quarantine-probe-seconds = \"soon\"\n").unwrap_err();
        assert_eq!(errors[0].key.as_deref(), Some("quarantine-probe-seconds"));
    }

    #[test]
    fn an_unknown_key_names_the_file_line_and_key() {
        let errors = parse("/etc/provisio.toml", "listen = \"127.0.0.1:1\"\nlisten-port = 80\n").unwrap_err();
        assert_eq!(errors.len(), 1);
        let message = errors[0].to_string();
        assert!(
            message.starts_with("/etc/provisio.toml:2: listen-port: unknown key"),
            "{message}"
        );
        assert!(message.contains("data-dir"), "the known keys are listed: {message}");
        // `config` is not a setting either.
        let errors = parse("f", "config = \"other.toml\"\n").unwrap_err();
        assert!(errors[0].to_string().starts_with("f:1: config: unknown key"));
    }

    #[test]
    fn bad_values_are_all_reported_with_their_lines() {
        let text = "listen = \"not an address\"\ndata-dir = \"/d\"\nlog-format = \"xml\"\njob-retention-days = \"week\"\ntls-cert = [1]\n";
        let errors = parse("p.toml", text).unwrap_err();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[0].starts_with("p.toml:1: listen: \"not an address\": "),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("p.toml:3: log-format: \"xml\": must be one of: text, json"),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("p.toml:4: job-retention-days: \"week\": "),
            "{lines:?}"
        );
        assert!(
            lines[3].starts_with("p.toml:5: tls-cert: expected a string, a number or a boolean"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let errors = parse("p.toml", "listen = \"127.0.0.1:1\"\ndata-dir = \n").unwrap_err();
        assert_eq!(errors[0].line, 2, "{}", errors[0]);
        assert!(errors[0].to_string().starts_with("p.toml:2: "));
        let errors = parse("p.toml", "listen = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n").unwrap_err();
        assert_eq!(errors[0].line, 2, "a duplicate key: {}", errors[0]);
    }

    #[test]
    fn a_flag_beats_the_file_and_the_file_beats_the_default() {
        let settings = parse(
            "p.toml",
            "listen = \"127.0.0.1:9001\"\nproxy-max-in-flight = 3\nlog-format = \"json\"\n",
        )
        .expect("valid");
        let args = serve_args(&settings, &[]);
        assert_eq!(args.listen.to_string(), "127.0.0.1:9001");
        assert_eq!(args.proxy_max_in_flight, 3);
        assert_eq!(args.log_format, "json");
        // What the file does not set keeps its default.
        assert_eq!(args.data_dir, std::path::PathBuf::from("provisio-data"));
        let args = serve_args(&settings, &["--listen", "127.0.0.1:9002", "--log-format", "text"]);
        assert_eq!(args.listen.to_string(), "127.0.0.1:9002");
        assert_eq!(args.log_format, "text");
        assert_eq!(args.proxy_max_in_flight, 3);
    }

    #[test]
    fn the_smtp_server_and_sender_come_from_the_file_and_bad_ones_are_refused() {
        let settings = parse(
            "p.toml",
            "smtp-url = \"smtp://u:p@mail.example.com:587\"\nsmtp-from = \"Provisio <p@example.com>\"\n",
        )
        .expect("valid");
        let args = serve_args(&settings, &[]);
        assert_eq!(args.smtp_url.as_deref(), Some("smtp://u:p@mail.example.com:587"));
        assert_eq!(args.smtp_from.as_deref(), Some("Provisio <p@example.com>"));
        let errors = parse(
            "p.toml",
            "smtp-url = \"http://mail.example.com\"\nsmtp-from = \"not an address\"\nsmtp-url-x = 1\n",
        )
        .unwrap_err();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("p.toml:1: smtp-url: ") && l.contains("smtp or smtps")),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("p.toml:2: smtp-from: ")),
            "{lines:?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("p.toml:3: smtp-url-x: unknown key")),
            "{lines:?}"
        );
        let errors = parse("p.toml", "smtp-url = \"smtp://m.example.com?tls=sometimes\"\n").unwrap_err();
        assert!(errors[0].to_string().contains("tls=sometimes"), "{}", errors[0]);
    }

    #[test]
    fn tls_pairs_may_be_split_between_the_file_and_a_flag() {
        let settings = parse("p.toml", "tls-cert = \"/c.pem\"\n").expect("valid");
        let args = serve_args(&settings, &["--tls-key", "/k.pem"]);
        assert!(args.check().is_ok());
        assert!(args.tls().is_some());
        // A certificate without its key is refused after the merge.
        let args = serve_args(&settings, &[]);
        assert!(args.check().unwrap_err().contains("--tls-key"));
    }
}
