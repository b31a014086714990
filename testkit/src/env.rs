//! The environment of a process a test starts.

use std::process::Command;

/// Removes from `command` every `ALLOCATE_*` variable of this process, so that the server or
/// agent it starts reads only the settings the test gives it.
pub fn without_allocate_vars(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ALLOCATE_") {
            command.env_remove(name);
        }
    }
    command
}
