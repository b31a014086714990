//! `allocate`: the command line for the developer who wants a machine from the lab.
//!
//! Presentation only: every call of the contract goes through `allocate-client`. Modules, in
//! layers without a cycle: `units` (durations and times), `exit` (exit codes), `args`
//! (clap definitions), `config` (flags, environment, config file), `output` (tables, JSON,
//! the waiting line), `signals`, then `commands` (one module per group of subcommands).

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

fn main() {
    // Before any thread exists (see `init_local_offset`).
    units::init_local_offset();
    let cli = Cli::parse();
    let code = match start(cli) {
        Ok(code) => code,
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("allocate: {e}");
            }
            e.code()
        }
    };
    std::process::exit(code);
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
        let client = allocate_client::Client::new(&settings.url, options)?;
        let ctx = Ctx {
            client,
            settings,
            format: cli.output,
            quiet: cli.quiet,
        };
        commands::dispatch(&ctx, cli.command).await
    })
}
