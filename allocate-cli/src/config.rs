//! Where the server is and who is asking: flags first, then the environment
//! (`ALLOCATE_URL`, `ALLOCATE_TOKEN`, `ALLOCATE_TOKEN_FILE`), then the config file
//! `$XDG_CONFIG_HOME/allocate/config.toml` (else `~/.config/allocate/config.toml`), then
//! defaults.
//!
//! The config file holds `key = "value"` lines (a TOML subset; `#` starts a comment): `url`,
//! `token_file`, `ca_file`, `username`.

use crate::args::Cli;
use crate::exit::{CliError, CliResult};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The server's address when nothing names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The keys a config file may hold.
const KEYS: &[&str] = &["url", "token_file", "ca_file", "username"];

/// What a command needs to reach the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The server's URL, or the URLs of the replicas of one store separated by commas.
    pub url: String,
    /// The bearer token, if any.
    pub token: Option<String>,
    /// An extra CA file, if any.
    pub ca_file: Option<PathBuf>,
    /// Who holds allocations.
    pub username: String,
}

/// The environment, as a lookup (a function so that tests need not touch the process's).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The config file's path, from the environment.
pub fn config_path(env: Env<'_>) -> Option<PathBuf> {
    let dir = env("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(dir.join("allocate").join("config.toml"))
}

/// Reads a config file's `key = "value"` lines; unknown keys are refused, naming them.
pub fn parse_config(text: &str, path: &Path) -> CliResult<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| CliError::usage(format!("{}:{}: {why}", path.display(), n + 1));
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad("expected key = \"value\""))?;
        let key = key.trim();
        if !KEYS.contains(&key) {
            return Err(bad(&format!(
                "unknown key {key:?} (known: {})",
                KEYS.join(", ")
            )));
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        values.insert(key.to_owned(), value.to_owned());
    }
    Ok(values)
}

fn read_token(path: &Path) -> CliResult<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("token file {}: {e}", path.display())))?;
    Ok(text.trim().to_owned())
}

/// The settings for `cli` in environment `env`.
pub fn resolve(cli: &Cli, env: Env<'_>) -> CliResult<Settings> {
    let file = match config_path(env) {
        Some(path) if path.exists() => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
            parse_config(&text, &path)?
        }
        _ => BTreeMap::new(),
    };
    let flags = (!cli.url.is_empty()).then(|| cli.url.join(","));
    let url = flags
        .or_else(|| env("ALLOCATE_URL"))
        .or_else(|| file.get("url").cloned())
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let token = match (&cli.token_file, env("ALLOCATE_TOKEN")) {
        (Some(path), _) => Some(read_token(path)?),
        (None, Some(token)) => Some(token),
        (None, None) => {
            match env("ALLOCATE_TOKEN_FILE").or_else(|| file.get("token_file").cloned()) {
                Some(path) => Some(read_token(Path::new(&path))?),
                None => None,
            }
        }
    };
    let ca_file = cli
        .ca_file
        .clone()
        .or_else(|| file.get("ca_file").map(PathBuf::from));
    let username = cli
        .username
        .clone()
        .or_else(|| file.get("username").cloned())
        .or_else(|| env("USER"))
        .unwrap_or_else(|| "allocate".to_owned());
    Ok(Settings {
        url,
        token,
        ca_file,
        username,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let dir = std::env::temp_dir().join(format!("allocate-cli-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("allocate")).unwrap();
        std::fs::write(
            dir.join("allocate/config.toml"),
            "# lab\nurl = \"http://file:1\"\nusername = \"from-file\"\n",
        )
        .unwrap();
        let xdg = dir.to_string_lossy().into_owned();
        let env_with = |url: Option<&'static str>| {
            let xdg = xdg.clone();
            move |k: &str| match k {
                "XDG_CONFIG_HOME" => Some(xdg.clone()),
                "ALLOCATE_URL" => url.map(str::to_owned),
                "ALLOCATE_TOKEN" => Some("t".to_owned()),
                _ => None,
            }
        };
        let cli = Cli::parse_from(["allocate", "ls"]);
        let s = resolve(&cli, &env_with(None)).unwrap();
        assert_eq!(
            (s.url.as_str(), s.username.as_str()),
            ("http://file:1", "from-file")
        );
        assert_eq!(s.token.as_deref(), Some("t"));
        let s = resolve(&cli, &env_with(Some("http://env:2"))).unwrap();
        assert_eq!(s.url, "http://env:2");
        let cli = Cli::parse_from(["allocate", "--url", "http://flag:3", "ls"]);
        assert_eq!(
            resolve(&cli, &env_with(Some("http://env:2"))).unwrap().url,
            "http://flag:3"
        );
        let cli = Cli::parse_from(["allocate", "--url", "http://a:3,http://b:4", "ls"]);
        let cli_again =
            Cli::parse_from(["allocate", "--url", "http://a:3", "--url=http://b:4", "ls"]);
        for cli in [cli, cli_again] {
            let s = resolve(&cli, &env_with(Some("http://env:2"))).unwrap();
            assert_eq!(s.url, "http://a:3,http://b:4");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_config_file_with_an_unknown_key_is_refused() {
        let err = parse_config("uri = \"x\"", Path::new("c.toml")).unwrap_err();
        assert!(err.message.contains("unknown key \"uri\""), "{err}");
    }
}
