//! The command line's definitions (clap derive): global flags, subcommands, requirement flags.

use crate::exit::EXIT_CODES_HELP;
use crate::units::parse_duration;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use uuid::Uuid;

/// Get a dedicated machine from the lab, use it, give it back.
#[derive(Debug, Parser)]
#[command(name = "allocate", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Server URL (else $ALLOCATE_URL, the config file, http://127.0.0.1:8080). The replicas
    /// of one store: repeat it or separate the URLs with commas (also in $ALLOCATE_URL and the
    /// file); calls go to whichever leads.
    #[arg(long, global = true, value_delimiter = ',')]
    pub url: Vec<String>,
    /// File holding the bearer token (else $ALLOCATE_TOKEN, $ALLOCATE_TOKEN_FILE, the config file).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM file of CA certificates to trust besides the system's (a private CA).
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Who holds the allocation (else the config file's `username`, then $USER).
    #[arg(long, global = true)]
    pub username: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Human)]
    pub output: Format,
    /// Print only what scripts need (an id, nothing on stderr while waiting).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Tables and sentences.
    Human,
    /// The contract's objects, one JSON document.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Wait for a matching machine, print how to reach it, and keep the lease.
    Get(Request),
    /// Like `get`, then run CMD with ALLOCATE_* in its environment; release when it exits.
    Run {
        /// What to ask for.
        #[command(flatten)]
        request: Request,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Like `get`, then `ssh` to the machine; release when the shell exits.
    Shell {
        /// What to ask for.
        #[command(flatten)]
        request: Request,
        /// More arguments for ssh (after `--`).
        #[arg(last = true)]
        ssh_args: Vec<String>,
    },
    /// List your live allocations.
    Ls {
        /// Everyone's (the server shows all only to an admin).
        #[arg(long)]
        all: bool,
    },
    /// Show one allocation.
    Show {
        /// The allocation id.
        id: Uuid,
    },
    /// Why a waiting request is not served: per requirement, how many registered resources it
    /// rules out, and why matching ones cannot be used now (yours, or anyone's for an admin).
    #[command(alias = "explain")]
    Why {
        /// The allocation id.
        id: Uuid,
    },
    /// Follow an allocation (yours, or anyone's for an admin): print its state, then each
    /// event until it ends (`-o json`: one contract object a line).
    Watch {
        /// The allocation id.
        id: Uuid,
    },
    /// Lengthen (or shorten) a lease.
    Extend {
        /// The allocation id.
        id: Uuid,
        /// Add this much to the current end (`1h`, `30m`).
        #[arg(long = "for", value_parser = parse_duration, conflicts_with = "until", required_unless_present = "until")]
        for_secs: Option<u64>,
        /// End the lease at this time instead (`18:00`, `2026-12-07 18:00`).
        #[arg(long)]
        until: Option<String>,
    },
    /// Release allocations (with no id: your only live one).
    Release {
        /// The allocation ids.
        ids: Vec<Uuid>,
    },
    /// ssh to the machine an allocation holds (its owner or an admin).
    Ssh {
        /// The allocation id.
        id: Uuid,
        /// More arguments for ssh (after `--`).
        #[arg(last = true)]
        ssh_args: Vec<String>,
    },
    /// List the lab's resources.
    Inventory {
        /// Only resources with every one of these labels (comma-separated).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Only resources in this state (free, allocated, offline, error, maintenance, reserved).
        #[arg(long)]
        state: Option<String>,
    },
    /// Print completions for a shell (`allocate completions bash > /etc/bash_completion.d/allocate`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (`allocate man > allocate.1`).
    Man,
    /// Save the server's whole state while it runs (admin): a snapshot file that a server
    /// started on a directory holding only it restores.
    Backup {
        /// A file, or a directory to put it in under the server's name for it
        /// (`snapshot-<n>.snap`, as a data directory names it).
        #[arg(long, value_name = "FILE_OR_DIR")]
        to: PathBuf,
    },
    /// Resource-hours and GPU-hours per user, label or resource over a window (an admin
    /// sees everyone's, a user their own).
    Usage {
        /// Group by user, label or resource.
        #[arg(long, value_enum, default_value_t = UsageGroup::User)]
        by: UsageGroup,
        /// Start of the window: unix seconds or a time (`2026-12-01 09:00`); default:
        /// everything the server keeps.
        #[arg(long)]
        from: Option<String>,
        /// End of the window, the same way; default: now.
        #[arg(long)]
        to: Option<String>,
    },
    /// Take a resource out of service, or return it (admin).
    Maintenance {
        /// The resource's inventory id.
        id: Uuid,
        /// on or off.
        #[arg(value_enum)]
        mode: Switch,
        /// Why (shown in the inventory).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `--count`: a whole number of machines, at least 1 (the server names its own maximum).
fn parse_count(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(0) => Err("--count must be at least 1, got 0".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "--count must be a whole number of machines, got {text:?}"
        )),
    }
}

/// A shell that completions can be written for.
pub use clap_complete::Shell;

/// How `allocate usage` groups allocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UsageGroup {
    /// By username.
    User,
    /// By each label of the resource held.
    Label,
    /// By resource (inventory id).
    Resource,
}

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Take it out of service.
    On,
    /// Return it to service.
    Off,
}

/// What to ask for: requirement flags, lease length and wait.
#[derive(Debug, Args)]
pub struct Request {
    /// Every one of these labels (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub tags: Vec<String>,
    /// None of these labels (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub exclude_tags: Vec<String>,
    /// A GPU whose label contains this, ignoring case ("RTX 2080").
    #[arg(long)]
    pub gpu: Option<String>,
    /// Each GPU has at least this much memory, in GB.
    #[arg(long)]
    pub gpu_memory: Option<u64>,
    /// This many GPUs.
    #[arg(long)]
    pub gpus: Option<u32>,
    /// At least this many CPUs.
    #[arg(long)]
    pub cpus: Option<u64>,
    /// At least this much memory, in GB.
    #[arg(long)]
    pub memory: Option<u64>,
    /// The resource's type (VM, device, server-onsite, ...).
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// This many distinct machines, each meeting every requirement, granted together.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub count: Option<u32>,
    /// Lease length counted from when it is ready (`2h`, `30m`); default: the server's.
    #[arg(long = "for", value_parser = parse_duration, conflicts_with = "until")]
    pub for_secs: Option<u64>,
    /// End the lease at this time (`18:00`, `2026-12-07 18:00`).
    #[arg(long)]
    pub until: Option<String>,
    /// How long to wait in the queue (`10m`; `0` only if free now); default: the server's.
    #[arg(long, value_parser = parse_duration)]
    pub wait: Option<u64>,
    /// A public key file the machine should let log in (repeatable); default:
    /// `~/.ssh/id_ed25519.pub`, else `~/.ssh/id_rsa.pub`, if present.
    #[arg(long = "ssh-key", value_name = "FILE")]
    pub ssh_keys: Vec<std::path::PathBuf>,
}
