//! The dashboard page's files, compiled in and served without a token. Each answer carries an `ETag` (a hash of the file taken at
//! compile time), so a browser that has the file revalidates it with a `304`.

use crate::state::AppState;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Only the server's own files and sockets: if a label or username ever slipped past the
/// page's escaping, no inline script would run, and nothing can be sent anywhere else.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// One compiled-in file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: u64,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Asset {
        Asset {
            body,
            content_type,
            etag: fnv1a(body.as_bytes()),
        }
    }

    fn respond(&self, request: &HeaderMap) -> Response {
        let etag = format!("\"{:016x}\"", self.etag);
        let fresh = request
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(CONTENT_TYPE, self.content_type)], self.body).into_response()
        };
        let headers = response.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            headers.insert(ETAG, etag);
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        response
    }
}

/// 64-bit FNV-1a: enough to tell versions of a file apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

static PAGE: Asset = Asset::new(
    include_str!("../dashboard/index.html"),
    "text/html; charset=utf-8",
);
static SCRIPT: Asset = Asset::new(
    include_str!("../dashboard/app.js"),
    "text/javascript; charset=utf-8",
);
static STYLE: Asset = Asset::new(
    include_str!("../dashboard/style.css"),
    "text/css; charset=utf-8",
);

/// `/` and the files it loads; open, since they hold no data.
pub fn page_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { PAGE.respond(&h) }))
        .route(
            "/dashboard/app.js",
            get(|h: HeaderMap| async move { SCRIPT.respond(&h) }),
        )
        .route(
            "/dashboard/style.css",
            get(|h: HeaderMap| async move { STYLE.respond(&h) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        for (name, asset) in [("page", &PAGE), ("script", &SCRIPT), ("style", &STYLE)] {
            let text = asset.body.to_ascii_lowercase();
            for outside in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(outside), "{name} mentions {outside}");
            }
        }
        assert!(PAGE.body.contains("/dashboard/app.js") && PAGE.body.contains("style.css"));
        assert!(!PAGE.body.contains("<script>") && !PAGE.body.contains(" style="));
        assert_ne!(PAGE.etag, SCRIPT.etag);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
