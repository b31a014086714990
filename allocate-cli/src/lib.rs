//! `allocate`: the command line for the developer who wants a machine from the lab.
//!
//! Presentation only: every call of the contract goes through `allocate-client`. One
//! implementation, two ways in: the `allocate` binary (`src/main.rs`) and the Python package's
//! `allocate` console script, which call [`main`]. Modules, in layers without a cycle: `units`
//! (durations and times), `exit` (exit codes), `args` (clap definitions), `config` (flags,
//! environment, config file), `output` (tables, JSON, the waiting line), `signals`, then
//! `commands` (one module per group of subcommands).

#![forbid(unsafe_code)]

mod args;
mod commands;
mod config;
mod exit;
mod output;
mod signals;
mod units;

use args::Cli;
use clap::Parser;
use commands::Ctx;
use exit::{CliError, Exit};
use std::ffi::OsString;

/// Runs the command line `args` (the program's name first) to its end; returns the exit
/// status. Call it before the process starts threads of its own, if it can: local time is
/// read then (else times are shown in UTC).
pub fn main(args: impl IntoIterator<Item = OsString>) -> i32 {
    units::init_local_offset();
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0; a usage error to stderr with 2.
            let _ = e.print();
            return e.exit_code();
        }
    };
    match start(cli) {
        Ok(code) => code,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("allocate: {e}");
            }
            e.code()
        }
    }
}

fn start(cli: Cli) -> Result<i32, CliError> {
    let env = |k: &str| std::env::var(k).ok();
    let settings = config::resolve(&cli, &env)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(Exit::Failure, format!("cannot start: {e}")))?;
    runtime.block_on(async {
        let options = allocate_client::ClientOptions {
            token: settings.token.clone(),
            ca_file: settings.ca_file.clone(),
            ..Default::default()
        };
        let client = allocate_client::Client::new(&settings.url, options).map_err(|e| match e {
            allocate_client::Error::Url { .. } => CliError::usage(format!(
                "--url (or $ALLOCATE_URL, or the config file's url): {e}"
            )),
            other => other.into(),
        })?;
        let ctx = Ctx {
            client,
            settings,
            format: cli.output,
            quiet: cli.quiet,
        };
        commands::dispatch(&ctx, cli.command).await
    })
}
