//! Presentation: tables, key/value blocks, JSON documents, and the waiting line on stderr.

use crate::units::{format_duration, format_when};
use allocate_client::{
    AllocationInfo, AllocationState, ClientEvent, Connection, Explanation, Finding, InventoryEntry,
    Lease, UsageRow,
};
use std::io::{IsTerminal, Write};

/// Rows with a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// `key  value` lines, keys padded.
pub fn block(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

/// The `ssh` command line for a connection.
pub fn ssh_command(connection: &Connection) -> Vec<String> {
    let mut line = vec!["ssh".to_owned()];
    if let Some(port) = connection.port {
        line.extend(["-p".to_owned(), port.to_string()]);
    }
    line.push(match connection.username.as_str() {
        "" => connection.host.clone(),
        user => format!("{user}@{}", connection.host),
    });
    line
}

/// Connection lines (host, username, password, ssh) for a key/value block.
fn connection_pairs(connection: &Connection) -> Vec<(&'static str, String)> {
    let mut pairs = vec![
        ("host", connection.host.clone()),
        ("username", connection.username.clone()),
    ];
    if let Some(password) = &connection.password {
        pairs.push(("password", password.clone()));
    }
    pairs.push(("ssh", ssh_command(connection).join(" ")));
    pairs
}

/// A ready lease, for people: a block for one resource; for several (`--count`), the
/// allocation's block and a table of every resource, the first one first.
pub fn lease_block(lease: &Lease, now: u64) -> String {
    if lease.resources.len() > 1 {
        let head = block(&[
            ("allocation", lease.allocation_id.to_string()),
            ("resources", lease.resources.len().to_string()),
            ("expires", format_when(lease.expires, now)),
        ]);
        let rows: Vec<Vec<String>> = lease
            .resources
            .iter()
            .map(|r| {
                let c = &r.connection;
                vec![
                    r.inventory_id.to_string(),
                    c.host.clone(),
                    c.username.clone(),
                    c.password.clone().unwrap_or_else(|| "-".to_owned()),
                    ssh_command(c).join(" "),
                ]
            })
            .collect();
        return head + &table(&["RESOURCE", "HOST", "USERNAME", "PASSWORD", "SSH"], &rows);
    }
    let mut pairs = vec![
        ("allocation", lease.allocation_id.to_string()),
        ("resource", lease.inventory_id.to_string()),
    ];
    pairs.extend(connection_pairs(&lease.connection));
    pairs.push(("expires", format_when(lease.expires, now)));
    block(&pairs)
}

/// A ready lease as the contract's `ready` object (with `resources` for several).
pub fn lease_json(lease: &Lease) -> serde_json::Value {
    let mut ready = serde_json::json!({
        "status": "ready",
        "allocation_id": lease.allocation_id,
        "inventory_id": lease.inventory_id,
        "connection": lease.connection,
        "expires": lease.expires,
    });
    if !lease.resources.is_empty() {
        ready["resources"] = serde_json::json!(lease.resources);
    }
    ready
}

/// A ready lease for scripts (`-q`): the allocation id; for several resources, then each
/// resource's inventory id and host, a line each, the first one first.
pub fn lease_quiet(lease: &Lease) -> String {
    let mut out = format!("{}\n", lease.allocation_id);
    if lease.resources.len() > 1 {
        for r in &lease.resources {
            out += &format!("{} {}\n", r.inventory_id, r.connection.host);
        }
    }
    out
}

/// One allocation, for people.
pub fn allocation_block(a: &AllocationInfo, now: u64) -> String {
    let mut pairs = vec![
        ("allocation", a.allocation_id.to_string()),
        ("state", a.state.as_str().to_owned()),
        ("username", a.username.clone()),
        (
            "resource",
            a.inventory_id
                .map_or_else(|| "-".to_owned(), |i| i.to_string()),
        ),
        ("created", format_when(a.created, now)),
        ("expires", format_when(a.expires, now)),
    ];
    if let Some(p) = a.position {
        pairs.push(("position", p.to_string()));
    }
    if let Some(c) = &a.connection {
        pairs.extend(connection_pairs(c));
    }
    block(&pairs)
}

/// Allocations as a table.
pub fn allocations_table(list: &[AllocationInfo], now: u64) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                a.allocation_id.to_string(),
                a.username.clone(),
                a.state.as_str().to_owned(),
                a.connection
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |c| c.host.clone()),
                format_when(a.expires, now),
            ]
        })
        .collect();
    table(&["ID", "USER", "STATE", "HOST", "EXPIRES"], &rows)
}

/// Resources as a table.
pub fn inventory_table(list: &[InventoryEntry]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let gpus: Vec<String> = r
                .gpu
                .iter()
                .map(|g| format!("{} ({} GB)", g.label, g.memory_gb))
                .collect();
            let state = match &r.reason {
                Some(why) => format!("{} ({why})", r.state.as_str()),
                None => r.state.as_str().to_owned(),
            };
            vec![
                r.inventory_id.to_string(),
                state,
                r.kind.clone(),
                r.cpu_count.to_string(),
                r.memory_gb.to_string(),
                if gpus.is_empty() {
                    "-".to_owned()
                } else {
                    gpus.join(", ")
                },
                r.labels.join(","),
            ]
        })
        .collect();
    table(
        &["ID", "STATE", "TYPE", "CPUS", "MEM GB", "GPUS", "LABELS"],
        &rows,
    )
}

/// `allocate usage`'s table: one row per group, hours with one decimal.
pub fn usage_table(group: &str, rows: &[UsageRow]) -> String {
    let hours = |secs: u64| format!("{:.1}", secs as f64 / 3600.0);
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.key.clone(),
                r.allocations.to_string(),
                hours(r.resource_seconds),
                hours(r.gpu_seconds),
            ]
        })
        .collect();
    table(
        &[group, "ALLOCATIONS", "RESOURCE-HOURS", "GPU-HOURS"],
        &rows,
    )
}

/// A JSON document on stdout.
pub fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("allocate: cannot write JSON: {e}"),
    }
}

/// A JSON document on one line of stdout (a stream of them, one per event).
pub fn print_json_line(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("allocate: cannot write JSON: {e}"),
    }
}

/// Where a request stands in the queue, in one line.
fn queue_line(position: Option<u32>, matching: Option<u64>, eta: Option<u64>, now: u64) -> String {
    let mut line = match position {
        Some(p) => format!("queued: position {p}"),
        None => "waiting".to_owned(),
    };
    if let Some(m) = matching {
        line += &format!(", {m} matching resource{}", if m == 1 { "" } else { "s" });
    }
    match eta {
        Some(eta) => line += &format!(", a match frees up at {}", format_when(eta, now)),
        None if position.is_some() => line += ", no estimate",
        None => {}
    }
    line
}

/// What a waiting request looks like, in one line.
pub fn waiting_line(state: &AllocationState, waited_secs: u64, now: u64) -> String {
    let line = queue_line(
        state.position(),
        state.matching_resources(),
        state.eta(),
        now,
    );
    line + &format!(" (waited {})", format_duration(waited_secs))
}

/// One event of an allocation, for people (`allocate watch`): a line, and the lease's block
/// when it is ready.
pub fn event_text(event: &ClientEvent, now: u64) -> String {
    match event {
        ClientEvent::Queued {
            position,
            matching_resources,
            eta,
            ..
        } => queue_line(Some(*position), Some(*matching_resources), *eta, now) + "\n",
        ClientEvent::Ready { .. } => {
            let block = Lease::of(event).map_or_else(String::new, |l| lease_block(&l, now));
            "ready\n".to_owned() + &block
        }
        ClientEvent::Offline { .. } => "offline: the machine's agent is away\n".to_owned(),
        ClientEvent::Online { .. } => "online: the machine's agent is back\n".to_owned(),
        ClientEvent::Expired { .. } => "expired: the lease ended\n".to_owned(),
        ClientEvent::Released { .. } => "released\n".to_owned(),
    }
}

/// Each finding of an explanation on a line of its own, indented, after a newline.
pub fn findings_lines(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("\n  {}: {}", f.reason.as_str(), f.message))
        .collect()
}

/// An explanation for people (`allocate why`): the counts, then each finding.
pub fn explanation_text(e: &Explanation) -> String {
    let lines = findings_lines(&e.findings);
    format!(
        "{} matching resource{}, {} free{}\n",
        e.matching_resources,
        if e.matching_resources == 1 { "" } else { "s" },
        e.free,
        if lines.is_empty() {
            String::new()
        } else {
            lines
        }
    )
}

/// Shows progress on stderr: one line redrawn on a terminal, a line per change otherwise.
#[derive(Debug)]
pub struct Progress {
    live: bool,
    quiet: bool,
    last: String,
}

impl Progress {
    /// Progress to stderr, silent when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Progress {
            live: std::io::stderr().is_terminal(),
            quiet,
            last: String::new(),
        }
    }

    /// Shows `line` (a terminal redraws; otherwise only a changed line is printed, without
    /// its waited time so that it changes only when the queue does).
    pub fn show(&mut self, line: &str) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.live {
            let _ = write!(err, "\r\x1b[K{line}");
            let _ = err.flush();
            self.last = line.to_owned();
            return;
        }
        let key = line.split(" (waited").next().unwrap_or(line);
        if key != self.last {
            let _ = writeln!(err, "{line}");
            self.last = key.to_owned();
        }
    }

    /// Ends the live line, if one is shown.
    pub fn done(&mut self) {
        if self.live && !self.quiet && !self.last.is_empty() {
            let _ = writeln!(std::io::stderr());
        }
        self.last.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ssh_line_names_the_port_and_no_absent_password() {
        let mut c = Connection {
            host: "gpu-1.lab".into(),
            username: "dev".into(),
            password: None,
            port: Some(2222),
        };
        assert_eq!(ssh_command(&c).join(" "), "ssh -p 2222 dev@gpu-1.lab");
        let pairs = connection_pairs(&c);
        assert!(pairs.iter().all(|(k, _)| *k != "password"));
        c.port = None;
        c.password = Some("pw".into());
        assert_eq!(ssh_command(&c).join(" "), "ssh dev@gpu-1.lab");
        assert!(connection_pairs(&c).contains(&("password", "pw".to_owned())));
        c.username.clear();
        assert_eq!(
            ssh_command(&c).join(" "),
            "ssh gpu-1.lab",
            "ssh's own default login"
        );
    }

    #[test]
    fn tables_pad_columns() {
        let t = table(
            &["ID", "STATE"],
            &[
                vec!["a".into(), "free".into()],
                vec!["bbbb".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID    STATE\na     free\nbbbb  x\n");
    }
}
