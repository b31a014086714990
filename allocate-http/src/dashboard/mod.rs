//! The dashboard's live feed at `/dashboard/feed` (docs/dashboard.md); the page at `/` and
//! the feed's route are in `routes`.
//!
//! The page is three files compiled into the binary (HTML, CSS, JavaScript; nothing fetched
//! from anywhere else, no build step). They hold no data, so they are served without a
//! token; everything the page shows comes from the feed, which needs one when tokens are
//! configured, and never carries a connection or password.
//!
//! The feed is a websocket (a browser sends its token as the `bearer.<token>` subprotocol,
//! as on `/allocate/`). It sends a `hello` (who the caller is, the server's clock), then a
//! whole snapshot of the lab each time something changed, coalesced ([`feed`] has the
//! bounds). A plain `GET /dashboard/feed` answers one snapshot: the page's first paint, and
//! its way to learn whether it needs a token.

mod feed;
mod view;

pub use feed::{serve, Hub, INBOUND_BYTES_MAX};
pub use view::{snapshot_text, CallerView};
