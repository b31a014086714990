//! The `allocate` binary: [`allocate_cli::main`] with this process's arguments.

#![forbid(unsafe_code)]

fn main() {
    std::process::exit(allocate_cli::main(std::env::args_os()));
}
