//! What the machine has: CPUs, memory and NVIDIA GPUs, read from `/proc` and `nvidia-smi`.
//!
//! The parsers are pure functions over text, so they are tested on recorded outputs; the few
//! functions that read files or run `nvidia-smi` only feed them.
//!
//! Sizes are whole GiB (the contract's `memory_gb`), rounded *up*: `/proc/meminfo`'s `MemTotal`
//! and `nvidia-smi`'s `memory.total` are always a little below the nominal size (the kernel and
//! the driver keep some back), so rounding up gives what people call the machine or the card
//! (a 32 GiB server shows `MemTotal` of about 31.3 GiB and registers as 32; an "80GB" H100 shows
//! 81559 MiB, 79.6 GiB, and registers as 80), while an exact multiple stays as it is.

use allocate_core::Gpu;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The query the agent runs; its output is what [`parse_nvidia_smi`] reads.
pub const NVIDIA_SMI_ARGS: [&str; 2] = [
    "--query-gpu=name,memory.total",
    "--format=csv,noheader,nounits",
];

/// How long `nvidia-smi` may take (it can hang on a wedged driver).
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a bad line an error quotes.
const QUOTE_CHARS_MAX: usize = 120;

/// Why the machine's resources could not be detected.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A file under `/proc` (or another system file) could not be read.
    #[error("could not read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `/proc/meminfo` has no `MemTotal: <n> kB` line.
    #[error("/proc/meminfo has no `MemTotal: <n> kB` line")]
    NoMemTotal,
    /// A line of `nvidia-smi`'s output is not `name, memory.total in MiB`.
    #[error("nvidia-smi output line {line} is not `name, memory.total in MiB`: {text:?}")]
    NvidiaSmiLine {
        /// 1-based line number.
        line: usize,
        /// The line (shortened).
        text: String,
    },
    /// `nvidia-smi` could not be started.
    #[error("could not run {program}: {source}")]
    NvidiaSmiSpawn {
        /// The program that was run.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// `nvidia-smi` exited with an error (a driver problem, usually).
    #[error("{program} failed ({status}): {message}; fix the driver, or pass --no-gpu or --gpu")]
    NvidiaSmiFailed {
        /// The program that was run.
        program: String,
        /// Its exit status.
        status: String,
        /// The first line it printed.
        message: String,
    },
    /// `nvidia-smi` did not finish in time.
    #[error("{program} did not finish within {} s; pass --no-gpu or --gpu to skip it", NVIDIA_SMI_TIMEOUT.as_secs())]
    NvidiaSmiTimeout {
        /// The program that was run.
        program: String,
    },
}

/// KiB (what `/proc/meminfo` calls kB) to whole GiB, rounded up.
pub fn kib_to_gb(kib: u64) -> u64 {
    kib.div_ceil(1024 * 1024)
}

/// MiB (what `nvidia-smi ... nounits` prints) to whole GiB, rounded up.
pub fn mib_to_gb(mib: u64) -> u64 {
    mib.div_ceil(1024)
}

/// Reads `MemTotal` from the text of `/proc/meminfo`, in whole GiB.
pub fn parse_meminfo(text: &str) -> Result<u64, DetectError> {
    text.lines()
        .find_map(|line| {
            let rest = line.strip_prefix("MemTotal:")?;
            let mut words = rest.split_whitespace();
            let kib = words.next()?.parse::<u64>().ok()?;
            (words.next() == Some("kB") && words.next().is_none()).then_some(kib)
        })
        .map(kib_to_gb)
        .ok_or(DetectError::NoMemTotal)
}

/// Counts the logical CPUs listed in the text of `/proc/cpuinfo`; `None` when it lists none.
pub fn parse_cpuinfo(text: &str) -> Option<u64> {
    let count = text
        .lines()
        .filter(|line| {
            line.strip_prefix("processor")
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .count() as u64;
    (count > 0).then_some(count)
}

/// Reads the GPUs from `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`.
///
/// Empty output (or nvidia-smi's `No devices were found`) means no GPUs. Any other line that is
/// not `name, MiB` is an error naming the line, rather than a GPU silently left out: a machine
/// registered with fewer GPUs than it has would never be offered for them.
pub fn parse_nvidia_smi(text: &str) -> Result<Vec<Gpu>, DetectError> {
    if text.trim() == "No devices were found" {
        return Ok(Vec::new());
    }
    let mut gpus = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || DetectError::NvidiaSmiLine {
            line: i + 1,
            text: quote(line),
        };
        // Split at the last comma: the memory is the last column, whatever the name holds.
        let (name, mib) = line.rsplit_once(',').ok_or_else(bad)?;
        let name = name.trim();
        let mib: u64 = mib.trim().parse().map_err(|_| bad())?;
        if name.is_empty() {
            return Err(bad());
        }
        gpus.push(Gpu {
            label: name.to_owned(),
            memory_gb: mib_to_gb(mib),
        });
    }
    Ok(gpus)
}

fn quote(text: &str) -> String {
    if text.chars().count() <= QUOTE_CHARS_MAX {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(QUOTE_CHARS_MAX).collect();
        short.push('…');
        short
    }
}

/// The number of logical CPUs: `/proc/cpuinfo`, else what the standard library sees.
///
/// `/proc/cpuinfo` comes first because it counts the whole machine, while
/// `available_parallelism` is limited by the agent's own CPU affinity and cgroup quota.
pub fn cpu_count() -> u64 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| parse_cpuinfo(&text))
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .map(|n| n.get() as u64)
        })
        .unwrap_or(1)
}

/// The machine's memory in whole GiB, from `/proc/meminfo`.
pub fn memory_gb() -> Result<u64, DetectError> {
    let path = Path::new("/proc/meminfo");
    let text = std::fs::read_to_string(path).map_err(|source| DetectError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_meminfo(&text)
}

/// The NVIDIA GPUs that `program` (by default `nvidia-smi`, looked up on `PATH`) reports.
///
/// When the default program is not on `PATH` the machine has no NVIDIA GPUs; an explicitly
/// given program that is missing is an error.
pub async fn nvidia_gpus(program: Option<&Path>) -> Result<Vec<Gpu>, DetectError> {
    let explicit = program.is_some();
    let program = program.unwrap_or(Path::new("nvidia-smi"));
    let name = program.display().to_string();
    let mut command = tokio::process::Command::new(program);
    command
        .args(NVIDIA_SMI_ARGS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !explicit => {
            tracing::info!("nvidia-smi is not on PATH: registering no NVIDIA GPUs");
            return Ok(Vec::new());
        }
        Err(source) => {
            return Err(DetectError::NvidiaSmiSpawn {
                program: name,
                source,
            })
        }
    };
    let output = tokio::time::timeout(NVIDIA_SMI_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| DetectError::NvidiaSmiTimeout {
            program: name.clone(),
        })?
        .map_err(|source| DetectError::NvidiaSmiSpawn {
            program: name.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if output.status.success() || stdout.trim() == "No devices were found" {
        return parse_nvidia_smi(&stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output");
    Err(DetectError::NvidiaSmiFailed {
        program: name,
        status: output.status.to_string(),
        message: quote(message),
    })
}

/// The machine's host name (`/proc/sys/kernel/hostname`, else `/etc/hostname`), if it has one.
pub fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_goes_up_to_whole_gib() {
        assert_eq!(mib_to_gb(0), 0);
        assert_eq!(mib_to_gb(7982), 8);
        assert_eq!(mib_to_gb(81559), 80);
        assert_eq!(mib_to_gb(40960), 40);
        assert_eq!(mib_to_gb(40961), 41);
        assert_eq!(kib_to_gb(32_735_564), 32);
        assert_eq!(kib_to_gb(16 * 1024 * 1024), 16);
    }

    #[test]
    fn meminfo_reads_mem_total() {
        let text = "MemTotal:       32735564 kB\nMemFree:         1000000 kB\n";
        assert_eq!(parse_meminfo(text).unwrap(), 32);
        assert!(matches!(
            parse_meminfo("MemFree: 5 kB\n"),
            Err(DetectError::NoMemTotal)
        ));
        assert!(matches!(
            parse_meminfo("MemTotal: lots kB\n"),
            Err(DetectError::NoMemTotal)
        ));
        assert!(matches!(
            parse_meminfo("MemTotal: 5 MB\n"),
            Err(DetectError::NoMemTotal)
        ));
    }

    #[test]
    fn cpuinfo_counts_processors() {
        let text = "processor\t: 0\nmodel name\t: X\n\nprocessor\t: 1\nmodel name\t: X\n";
        assert_eq!(parse_cpuinfo(text), Some(2));
        assert_eq!(parse_cpuinfo("model name : X\n"), None);
        assert_eq!(parse_cpuinfo("processors_total : 4\n"), None);
    }

    #[test]
    fn nvidia_smi_lines() {
        let gpus = parse_nvidia_smi("NVIDIA GeForce RTX 2080, 7982\r\n\n").unwrap();
        assert_eq!(
            gpus,
            [Gpu {
                label: "NVIDIA GeForce RTX 2080".into(),
                memory_gb: 8
            }]
        );
        assert!(parse_nvidia_smi("").unwrap().is_empty());
        assert!(parse_nvidia_smi("No devices were found\n")
            .unwrap()
            .is_empty());
        let err = parse_nvidia_smi("NVIDIA A10, 23028\nNVIDIA A10, [N/A]\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "nvidia-smi output line 2 is not `name, memory.total in MiB`: \"NVIDIA A10, [N/A]\""
        );
        assert!(parse_nvidia_smi(", 100\n").is_err());
        let long = "x".repeat(500);
        let err = parse_nvidia_smi(&long).unwrap_err().to_string();
        assert!(err.len() < 250, "{err}");
    }
}
