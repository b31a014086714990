//! `completions` and `man`: generated from the same definitions as the parser.

use crate::args::{Cli, Shell};
use crate::exit::{CliError, CliResult, Exit};
use clap::CommandFactory;

/// `allocate completions SHELL`: the completion script on stdout.
pub fn completions(shell: Shell) -> CliResult {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "allocate", &mut std::io::stdout());
    Ok(())
}

/// `allocate man`: the man page (roff) on stdout.
pub fn man() -> CliResult {
    clap_mangen::Man::new(Cli::command())
        .render(&mut std::io::stdout())
        .map_err(|e| CliError::new(Exit::Failure, format!("cannot write the man page: {e}")))
}
