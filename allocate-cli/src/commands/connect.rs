//! `ssh ID`: log in to the machine an allocation holds.

use super::Ctx;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::ssh_command;
use std::os::unix::process::CommandExt;
use uuid::Uuid;

/// `allocate ssh ID [-- ARGS]`: replaces this process with `ssh user@host ARGS`.
pub async fn ssh(ctx: &Ctx, id: Uuid, ssh_args: Vec<String>) -> CliResult<i32> {
    let a = ctx.client.allocation(id).await?;
    let connection = a.connection.ok_or_else(|| {
        CliError::new(
            Exit::Refused,
            format!(
                "allocation {id} is {} and shows no connection to {}",
                a.state.as_str(),
                ctx.settings.username
            ),
        )
    })?;
    let mut command = ssh_command(&connection);
    let program = command.remove(0);
    // `exec` returns only on failure.
    let error = std::process::Command::new(&program)
        .args(ssh_args)
        .args(command)
        .exec();
    Err(CliError::usage(format!("cannot run {program}: {error}")))
}
