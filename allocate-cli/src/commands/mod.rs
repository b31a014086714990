//! One module per group of subcommands; [`dispatch`] runs the one asked for.

mod acquire;
mod backup;
mod connect;
mod help;
mod list;
mod manage;
mod usage;

use crate::args::{Command, Format};
use crate::config::Settings;
use crate::exit::CliResult;
use allocate_client::Client;

/// What every command needs.
#[derive(Debug)]
pub struct Ctx {
    /// The server.
    pub client: Client,
    /// Where and who.
    pub settings: Settings,
    /// How to print.
    pub format: Format,
    /// Print only what scripts need.
    pub quiet: bool,
}

impl Ctx {
    /// Whether to print JSON.
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }
}

/// Runs `command`; the exit code on success (0, or `run`'s command's status).
pub async fn dispatch(ctx: &Ctx, command: Command) -> CliResult<i32> {
    match command {
        Command::Get(request) => acquire::get(ctx, &request).await.map(|()| 0),
        Command::Run { request, command } => acquire::run(ctx, &request, command).await,
        Command::Shell { request, ssh_args } => acquire::shell(ctx, &request, ssh_args).await,
        Command::Ls { all } => list::ls(ctx, all).await.map(|()| 0),
        Command::Show { id } => list::show(ctx, id).await.map(|()| 0),
        Command::Watch { id } => list::watch(ctx, id).await.map(|()| 0),
        Command::Why { id } => list::why(ctx, id).await.map(|()| 0),
        Command::Inventory { tags, state } => list::inventory(ctx, tags, state).await.map(|()| 0),
        Command::Extend {
            id,
            for_secs,
            until,
        } => manage::extend(ctx, id, for_secs, until).await.map(|()| 0),
        Command::Release { ids } => manage::release(ctx, ids).await.map(|()| 0),
        Command::Ssh { id, ssh_args } => connect::ssh(ctx, id, ssh_args).await,
        Command::Completions { shell } => help::completions(shell).map(|()| 0),
        Command::Man => help::man().map(|()| 0),
        Command::Backup { to } => backup::backup(ctx, &to).await.map(|()| 0),
        Command::Usage { by, from, to } => usage::usage(ctx, by, from, to).await.map(|()| 0),
        Command::Maintenance { id, mode, reason } => {
            manage::maintenance(ctx, id, mode, reason).await.map(|()| 0)
        }
    }
}
