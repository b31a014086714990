//! `/admin/`: what an operator does to the server itself.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::journal;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use tracing::{error, info};

/// `POST /admin/backup`, for admins: the state at a durable point of the journal, as a
/// snapshot file of the data directory (its name in `Content-Disposition`). A server
/// started on a directory holding only that file has every allocation, resource and
/// credential it had; requests still waiting are cancelled there, as after any restart.
pub(super) async fn backup(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require_admin("POST /admin/backup")?;
    let (seq, snapshot) = app.shared.driver.snapshot().await?;
    // Encoding a large state takes a while: off the runtime's threads.
    let encoded = tokio::task::spawn_blocking(move || journal::backup(seq, &snapshot)).await;
    let backup = encoded
        .map_err(|e| e.to_string())
        .and_then(|made| made.map_err(|e| e.to_string()))
        .map_err(|why| {
            error!("backup: {why}");
            ApiError::Internal("encoding the backup")
        })?;
    info!(seq, bytes = backup.contents.len(), by = %caller, "backup taken");
    let disposition = format!("attachment; filename=\"{}\"", backup.file_name);
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream".to_owned()),
            (CONTENT_DISPOSITION, disposition),
        ],
        backup.contents,
    )
        .into_response())
}
