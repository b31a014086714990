//! `allocate-http`: serves the allocate API (see `--help` for the flags).

use allocate_http::{run, Args, LogFormat, PolicyFile, Tls, Tokens};
use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut filter = match EnvFilter::try_new(&args.log_level) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("allocate-http: --log-level {:?}: {e}", args.log_level);
            return ExitCode::from(2);
        }
    };
    // tungstenite's trace level prints whole frames (the `ready` messages' and the agents'
    // passwords): pinned so that no --log-level can show them.
    for quiet in ["tungstenite=info", "tokio_tungstenite=info"] {
        filter = filter.add_directive(quiet.parse().expect("a valid directive"));
    }
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => log.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => log.json().flatten_event(true).init(),
    }
    raise_open_files_limit();
    let config = match args.server_config() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    if config.tokens.is_open() {
        tracing::warn!(
            "no tokens file is configured (--tokens-file): the server runs open, and every \
             caller may do everything"
        );
    } else {
        tracing::info!(tokens = config.tokens.count(), "bearer tokens loaded");
    }
    if !config.tokens.is_open() || config.tls.is_some() || config.quotas.is_some() {
        let files = Reloadable {
            tokens: config.tokens.clone(),
            tls: config.tls.clone(),
            quotas: config.quotas.clone(),
        };
        tokio::spawn(reload_on_hangup(files));
    }
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!("cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    match run(listener, config, stop_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard one, so that `--connections-max` is what
/// bounds the connections (the server lowers it to what the limit allows, and says so).
#[cfg(unix)]
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    limit.current = limit.maximum;
    if let Err(e) = setrlimit(Resource::Nofile, limit) {
        tracing::debug!("cannot raise the open-files limit: {e}");
    }
}

/// Elsewhere the limit stays as it is.
#[cfg(not(unix))]
fn raise_open_files_limit() {}

/// The files read again on SIGHUP.
struct Reloadable {
    tokens: Tokens,
    tls: Option<Tls>,
    quotas: Option<PolicyFile>,
}

/// Reads the tokens file, the certificate and key, and the policy file again on every
/// SIGHUP; a bad file keeps what was loaded before.
#[cfg(unix)]
async fn reload_on_hangup(files: Reloadable) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!(
            "cannot listen for SIGHUP: the tokens, certificate and policy are read only at start"
        );
        return;
    };
    while hangups.recv().await.is_some() {
        reload(&files);
    }
}

/// Without SIGHUP the files are read only at start.
#[cfg(not(unix))]
async fn reload_on_hangup(_files: Reloadable) {}

#[cfg(unix)]
fn reload(files: &Reloadable) {
    if !files.tokens.is_open() {
        reload_tokens(&files.tokens);
    }
    if let Some(tls) = &files.tls {
        reload_tls(tls);
    }
    if let Some(quotas) = &files.quotas {
        match quotas.reload() {
            Ok(()) => tracing::info!("policy file reloaded"),
            Err(e) => tracing::error!("{e}; keeping the policy loaded before"),
        }
    }
}

/// Rereads the tokens file; on a failure the tokens loaded before stay.
#[cfg(unix)]
fn reload_tokens(tokens: &Tokens) {
    match tokens.reload() {
        Ok(count) => tracing::info!(tokens = count, "tokens file reloaded"),
        Err(e) => tracing::error!("{e}; keeping the tokens loaded before"),
    }
}

/// Rereads the certificate and key; on a failure the pair loaded before stays.
#[cfg(unix)]
fn reload_tls(tls: &Tls) {
    match tls.reload() {
        Ok(()) => tracing::info!(cert = %tls.cert_path().display(), "certificate reloaded"),
        Err(e) => tracing::error!("{e}; keeping the certificate loaded before"),
    }
}

/// Completes on ctrl-c or, on unix, SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
