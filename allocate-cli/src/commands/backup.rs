//! `backup`: the server's state, saved while it runs.

use super::Ctx;
use crate::exit::{CliError, CliResult, Exit};
use crate::output::print_json;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The name a backup takes in a directory when the server gave none.
const DEFAULT_NAME: &str = "allocate-backup.snap";

/// `allocate backup --to FILE_OR_DIR`: `POST /admin/backup`, written to the file (readable
/// by its owner only: it holds credentials), or into the directory under the server's name
/// for it. Prints where it went.
pub async fn backup(ctx: &Ctx, to: &Path) -> CliResult {
    let backup = ctx.client.backup().await?;
    let path: PathBuf = if to.is_dir() {
        to.join(backup.file_name.as_deref().unwrap_or(DEFAULT_NAME))
    } else {
        to.to_owned()
    };
    write_private(&path, &backup.contents).map_err(|e| {
        CliError::new(
            Exit::Failure,
            format!("cannot write the backup to {}: {e}", path.display()),
        )
    })?;
    let bytes = backup.contents.len();
    if ctx.json() {
        print_json(&serde_json::json!({"path": path, "bytes": bytes}));
    } else if ctx.quiet {
        println!("{}", path.display());
    } else {
        println!(
            "backup of {} written to {} ({bytes} bytes)",
            ctx.client.url(),
            path.display()
        );
    }
    Ok(())
}

/// Writes `contents` to `path` (mode `0600` on unix, replacing what was there) and syncs it.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
