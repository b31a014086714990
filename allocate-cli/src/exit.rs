//! Exit codes, one per kind of failure, and the error every command returns.
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | done |
//! | 1 | any other failure |
//! | 2 | usage: a bad flag, value or configuration |
//! | 3 | not found: no such allocation or resource |
//! | 4 | timed out: nothing became free within `--wait` |
//! | 5 | refused by the server (an impossible request, a bad field, not allowed) |
//! | 6 | connection: the server cannot be reached, or the connection was lost |
//!
//! `run` and `shell` exit with their command's status instead (128 + the signal's number when
//! it was killed by one); a wait interrupted by a signal exits with 128 + its number.

use allocate_client::Error;
use std::fmt;

/// A failure's exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 1: anything not below.
    Failure = 1,
    /// 2: a bad flag, value or configuration.
    Usage = 2,
    /// 3: no such allocation or resource.
    NotFound = 3,
    /// 4: nothing became free in time.
    TimedOut = 4,
    /// 5: the server refused.
    Refused = 5,
    /// 6: the server cannot be reached, or the connection was lost.
    Connection = 6,
}

/// The exit-code table, for `--help`.
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 done; 1 other failure; 2 usage (bad flag, value \
or configuration); 3 not found; 4 timed out (nothing free within --wait); 5 refused by the server \
(impossible request, bad field, not allowed); 6 connection (server unreachable or connection \
lost). `run` and `shell` exit with their command's status; a wait interrupted by a signal \
exits with 128 + its number (130 for Ctrl-C), cancelling the request.";

/// Why a command failed: a sentence and an exit code.
#[derive(Debug)]
pub struct CliError {
    /// What to exit with.
    pub exit: Exit,
    /// What to say (on stderr).
    pub message: String,
    /// The signal that interrupted the command, if one did: the exit code is then 128 + it.
    pub signal: Option<i32>,
}

impl CliError {
    /// A failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
            signal: None,
        }
    }

    /// Interrupted by signal `signo`.
    pub fn signal(signo: i32, message: impl Into<String>) -> Self {
        CliError {
            signal: Some(signo),
            ..Self::new(Exit::Failure, message)
        }
    }

    /// The process's exit code.
    pub fn code(&self) -> i32 {
        self.signal.map_or(self.exit as i32, |s| 128 + s)
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The exit code for a client error's stable code ([`Error::code`]).
pub fn exit_for_code(code: &str) -> Exit {
    match code {
        "not_found" => Exit::NotFound,
        "allocation_timeout" | "timeout" => Exit::TimedOut,
        "connection" | "lost" | "setup" => Exit::Connection,
        "url" | "token" | "ca_file" => Exit::Usage,
        "invalid_request" | "unauthorized" | "forbidden" | "quota_exceeded" | "conflict"
        | "shutting_down" | "not_leader" | "released" | "ended" => Exit::Refused,
        _ => Exit::Failure,
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let message = match e.refusal() {
            // The server's sentence names the field; the status and code add nothing for a person.
            Some(refusal) => refusal.message.clone(),
            None => allocate_client::chain(&e),
        };
        CliError::new(exit_for_code(e.code()), message)
    }
}

/// A command's result.
pub type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_mapped() {
        let all = [
            Exit::Failure,
            Exit::Usage,
            Exit::NotFound,
            Exit::TimedOut,
            Exit::Refused,
            Exit::Connection,
        ];
        let mut numbers: Vec<i32> = all.iter().map(|e| *e as i32).collect();
        numbers.dedup();
        assert_eq!(numbers.len(), all.len());
        assert_eq!(exit_for_code("allocation_timeout"), Exit::TimedOut);
        assert_eq!(exit_for_code("invalid_request"), Exit::Refused);
        assert_eq!(exit_for_code("connection"), Exit::Connection);
        assert_eq!(exit_for_code("not_found"), Exit::NotFound);
    }
}
