//! [`Client`]: a server's base URL, the bearer token, one TLS configuration, and the contract's
//! HTTP calls; the websocket endpoints open through it too.

use crate::chain::chain;
use crate::error::Error;
use crate::failover::{FailoverOptions, Servers, Walk};
use crate::socket::{Socket, MESSAGE_BYTES_MAX};
use crate::tls;
use allocate_core::wire::{self, admin, explain, listing, Envelope, WireError};
use allocate_core::{
    AllocationInfo, ErrorCode, Explanation, InventoryEntry, InventoryFilter, Requirements,
    UsageQuery, UsageRow,
};
use reqwest::{Method, Url};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::Connector;
use uuid::Uuid;

/// How a [`Client`] reaches its servers.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Sent as `Authorization: Bearer <token>` on every call and websocket upgrade.
    pub token: Option<String>,
    /// A PEM file of CA certificates trusted besides the system's roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// How long one HTTP call may take, from sending to the whole answer.
    pub http_timeout: Duration,
    /// How long opening a websocket (TCP, TLS and the upgrade) may take.
    pub connect_timeout: Duration,
    /// How a client of several servers moves to the leader.
    pub failover: FailoverOptions,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            token: None,
            ca_file: None,
            http_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            failover: FailoverOptions::default(),
        }
    }
}

/// A backup of the server's state (`POST /admin/backup`).
#[derive(Clone, Debug)]
pub struct Backup {
    /// The name the server gives the file (`snapshot-<n>.snap`, as its data directory names
    /// it), when it gave a usable one: a plain file name, no directory.
    pub file_name: Option<String>,
    /// The file's bytes.
    pub contents: Vec<u8>,
}

/// The file name of a `Content-Disposition: attachment; filename="..."`, when it is a plain
/// name (no path separator, not `.` or `..`).
fn attachment_name(disposition: &str) -> Option<String> {
    let name = disposition
        .split(';')
        .find_map(|part| part.trim().strip_prefix("filename="))?
        .trim_matches('"');
    let plain = !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..";
    plain.then(|| name.to_owned())
}

/// Reads an answer's envelope with `parse`: the data, or the refusal as [`Error::Refused`].
fn read_envelope<T>(
    what: String,
    text: &str,
    parse: fn(&str) -> Result<Envelope<T>, WireError>,
) -> Result<T, Error> {
    match parse(text) {
        Ok(envelope) => envelope.into_result().map_err(|refusal| Error::Refused {
            what,
            refusal: Box::new(refusal),
        }),
        Err(source) => Err(Error::Unreadable { what, source }),
    }
}

/// The servers of one store (or one server). Cheap to clone: clones share the HTTP
/// connection pool and which server is believed to lead.
///
/// With several servers (API.md, "Replicas") a call goes to the one believed to lead; when
/// that one refuses the connection or answers `503 not_leader`, the call moves to the leader
/// the standby names or else to the next server, pausing after each round
/// ([`FailoverOptions`]). Nothing that a leader may have carried out is sent twice: a call
/// whose connection failed after it was sent is resent only when it is idempotent (every
/// call but `DELETE`); opening a websocket is always safe to repeat, since the upgrade
/// itself changes nothing.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Base URLs `http(s)://host[:port]/prefix/`, each ending in `/`. A std mutex: never held
    /// across an `.await`, each critical section a lookup or an index update.
    servers: Mutex<Servers>,
    token: Option<String>,
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
    options: ClientOptions,
}

impl Client {
    /// A client of the server at `urls`, or of the servers of one store when it lists several
    /// separated by commas (see [`Client::with_urls`]).
    pub fn new(urls: &str, options: ClientOptions) -> Result<Self, Error> {
        Self::with_urls(urls.split(','), options)
    }

    /// A client of the servers at `urls` (`http://`, `https://`, or the same as `ws://`,
    /// `wss://`; a path prefix is kept), the first tried first. Checks every URL, the token
    /// and the CA file now.
    pub fn with_urls<S: AsRef<str>>(
        urls: impl IntoIterator<Item = S>,
        options: ClientOptions,
    ) -> Result<Self, Error> {
        let bases = urls
            .into_iter()
            .map(|u| parse_base(u.as_ref().trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if bases.is_empty() {
            return Err(Error::Url {
                url: String::new(),
                why: "no server URL was given".into(),
            });
        }
        if let Some(t) = &options.token {
            HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| Error::Token)?;
        }
        let secure = bases.iter().any(|b| b.scheme() == "https");
        let tls = tls::client_config(secure, options.ca_file.as_deref())?;
        // No proxy: websockets do not go through one either, so both reach the same server.
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(options.http_timeout)
            .use_preconfigured_tls(rustls::ClientConfig::clone(&tls))
            .build()
            .map_err(|e| Error::Setup(chain(&e)))?;
        Ok(Client {
            inner: Arc::new(Inner {
                servers: Mutex::new(Servers::new(bases)),
                token: options.token.clone(),
                http,
                tls,
                options,
            }),
        })
    }

    /// The base URL of the server believed to lead (`http(s)://...`, without the trailing
    /// slash).
    pub fn url(&self) -> String {
        without_slash(self.servers().current())
    }

    /// Every server known: the configured ones in order, then leaders that standbys named.
    pub fn urls(&self) -> Vec<String> {
        self.servers().all().iter().map(without_slash).collect()
    }

    /// The options it was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// `GET /inventory/` with the filters of `filter` (tags, state).
    pub async fn inventory(&self, filter: &InventoryFilter) -> Result<Vec<InventoryEntry>, Error> {
        let query = listing::inventory_query(filter);
        self.call(
            Method::GET,
            "inventory/",
            &query,
            None,
            listing::parse_inventory,
        )
        .await
    }

    /// `GET /inventory/{id}`: one resource.
    pub async fn resource(&self, inventory_id: Uuid) -> Result<InventoryEntry, Error> {
        let path = format!("inventory/{inventory_id}");
        self.call(Method::GET, &path, &[], None, listing::parse_resource)
            .await
    }

    /// `PATCH /inventory/{id}` (admin): `Some(reason)` takes the resource out of service once
    /// its lease ends, `None` returns it (and clears `error`). Answers the resource.
    pub async fn set_maintenance(
        &self,
        inventory_id: Uuid,
        reason: Option<&str>,
    ) -> Result<InventoryEntry, Error> {
        let path = format!("inventory/{inventory_id}");
        let body = admin::maintenance_patch_text(reason);
        self.call(
            Method::PATCH,
            &path,
            &[],
            Some(body),
            listing::parse_resource,
        )
        .await
    }

    /// `GET /allocate/`: the caller's allocations (every one for an admin).
    pub async fn allocations(&self) -> Result<Vec<AllocationInfo>, Error> {
        self.call(
            Method::GET,
            "allocate/",
            &[],
            None,
            listing::parse_allocations,
        )
        .await
    }

    /// `GET /usage`: resource-seconds and GPU-seconds per user, label or resource over the
    /// query's window (everyone's for an admin, the caller's own for a user).
    pub async fn usage(&self, query: &UsageQuery) -> Result<Vec<UsageRow>, Error> {
        let pairs = listing::usage_query(query);
        self.call(Method::GET, "usage", &pairs, None, listing::parse_usage)
            .await
    }

    /// `GET /allocate/{id}`: one allocation (its `connection` only for its owner or an admin).
    pub async fn allocation(&self, allocation_id: Uuid) -> Result<AllocationInfo, Error> {
        let path = format!("allocate/{allocation_id}");
        self.call(Method::GET, &path, &[], None, listing::parse_allocation)
            .await
    }

    /// `PATCH /allocate/{id}` with `{"expires": t}`: extends or shortens the lease (capped by
    /// the server's maximum). Answers the allocation with its effective `expires`.
    pub async fn extend(&self, allocation_id: Uuid, expires: u64) -> Result<AllocationInfo, Error> {
        let path = format!("allocate/{allocation_id}");
        let body = admin::expires_patch_text(expires);
        self.call(
            Method::PATCH,
            &path,
            &[],
            Some(body),
            listing::parse_allocation,
        )
        .await
    }

    /// `DELETE /allocate/{id}`: frees the allocation or cancels the waiting request.
    pub async fn release(&self, allocation_id: Uuid) -> Result<(), Error> {
        let path = format!("allocate/{allocation_id}");
        self.call(Method::DELETE, &path, &[], None, listing::parse_sentence)
            .await
            .map(drop)
    }

    /// `POST /match`: a dry run of `requirements` (its `username` may be empty): how many
    /// registered resources match, how many are free, and why the others are not.
    pub async fn dry_run(&self, requirements: &Requirements) -> Result<Explanation, Error> {
        let body = explain::match_request_text(requirements);
        self.call(
            Method::POST,
            "match",
            &[],
            Some(body),
            explain::parse_explanation,
        )
        .await
    }

    /// `GET /allocate/{id}/explain`: the same for a live request (its owner's or an admin's).
    pub async fn explain(&self, allocation_id: Uuid) -> Result<Explanation, Error> {
        let path = format!("allocate/{allocation_id}/explain");
        self.call(Method::GET, &path, &[], None, explain::parse_explanation)
            .await
    }

    /// `GET /healthz`: `Ok` when the server (the leader) is serving.
    pub async fn health(&self) -> Result<(), Error> {
        self.call(Method::GET, "healthz", &[], None, listing::parse_sentence)
            .await
            .map(drop)
    }

    /// `POST /admin/backup` (admins): the server's whole state at a durable point, as a
    /// snapshot file of its data directory. A read: sent again to the leader after a failure.
    pub async fn backup(&self) -> Result<Backup, Error> {
        self.across_servers(true, |base| self.backup_once(base))
            .await
    }

    /// [`Client::backup`] on the server at `base`.
    async fn backup_once(&self, base: Url) -> Result<Backup, Error> {
        let (what, response) = self
            .send_once(base, Method::POST, "admin/backup", &[], None)
            .await?;
        let succeeded = response.status().is_success();
        let file_name = response
            .headers()
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|value| value.to_str().ok())
            .and_then(attachment_name);
        let body = response.bytes().await.map_err(|source| Error::Http {
            what: what.clone(),
            source,
        })?;
        if !succeeded {
            let text = String::from_utf8_lossy(&body);
            let sentence = read_envelope(what.clone(), &text, listing::parse_sentence)?;
            let source = WireError::Unrecognized(sentence);
            return Err(Error::Unreadable { what, source });
        }
        Ok(Backup {
            file_name,
            contents: body.to_vec(),
        })
    }

    fn servers(&self) -> MutexGuard<'_, Servers> {
        // Plain data: still consistent if a holder panicked.
        self.inner
            .servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether there is another server to move to (several configured, or a leader learned).
    pub(crate) fn several_servers(&self) -> bool {
        self.servers().all().len() > 1
    }

    /// Runs `attempt` on the server believed to lead, and again on the others as
    /// [`Client`] describes while its error allows it (`resend`: the request may be sent
    /// again after a failure that came after it was sent).
    async fn across_servers<T, F>(
        &self,
        resend: bool,
        attempt: impl Fn(Url) -> F,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        let started = Instant::now();
        let mut walk = Walk::new(&self.inner.options.failover);
        loop {
            let base = self.servers().current().clone();
            let error = match attempt(base.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
            let Some(leader) = elsewhere(&error, resend) else {
                return Err(error);
            };
            let delay = {
                let mut servers = self.servers();
                servers.failed(&base, leader);
                walk.next_delay(servers.all().len(), started.elapsed())
            };
            match delay {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(error),
            }
        }
    }

    /// Calls `method path` and reads the answer with `parse`: the data, or the refusal as
    /// [`Error::Refused`].
    async fn call<T>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<String>,
        parse: fn(&str) -> Result<Envelope<T>, WireError>,
    ) -> Result<T, Error> {
        // Every call of the contract but DELETE is idempotent: GET, a PATCH to absolute
        // values, POST /match (a dry run).
        let resend = method != Method::DELETE;
        let call = Call {
            method,
            path,
            query,
            body,
            parse,
        };
        self.across_servers(resend, |base| self.call_once(base, &call))
            .await
    }

    /// `call` on the server at `base`.
    async fn call_once<T>(&self, base: Url, call: &Call<'_, T>) -> Result<T, Error> {
        let (what, response) = self
            .send_once(
                base,
                call.method.clone(),
                call.path,
                call.query,
                call.body.clone(),
            )
            .await?;
        let text = response.text().await.map_err(|source| Error::Http {
            what: what.clone(),
            source,
        })?;
        read_envelope(what, &text, call.parse)
    }

    /// Sends `method path` with `query` and a JSON `body` to the server at `base`; returns
    /// what it was (for errors) and the answer.
    async fn send_once(
        &self,
        base: Url,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<String>,
    ) -> Result<(String, reqwest::Response), Error> {
        let url = join(&base, path, query)?;
        let what = format!("{method} {url}");
        let mut request = self.inner.http.request(method, url);
        if let Some(t) = &self.inner.token {
            request = request.bearer_auth(t);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        match request.send().await {
            Ok(response) => Ok((what, response)),
            Err(source) => Err(Error::Http { what, source }),
        }
    }

    /// Opens a websocket to `path` on the leader with the token in the upgrade; an upgrade
    /// the servers answer with an error envelope (401, 403, 503 ...) is [`Error::Refused`].
    pub(crate) async fn connect(&self, path: &str) -> Result<Socket, Error> {
        self.across_servers(true, |base| self.connect_once(base, path))
            .await
    }

    /// [`Client::connect`] to the server at `base`.
    async fn connect_once(&self, base: Url, path: &str) -> Result<Socket, Error> {
        let mut url = join(&base, path, &[])?;
        let ws = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(ws).map_err(|()| Error::Url {
            url: url.to_string(),
            why: "cannot be made a websocket URL".into(),
        })?;
        let what = format!("websocket {url}");
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::WebSocket {
                what: what.clone(),
                source: Box::new(e),
            })?;
        if let Some(t) = &self.inner.token {
            let value = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| Error::Token)?;
            request.headers_mut().insert("authorization", value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(MESSAGE_BYTES_MAX))
            .max_frame_size(Some(MESSAGE_BYTES_MAX));
        let connector = Connector::Rustls(self.inner.tls.clone());
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            request,
            Some(config),
            true,
            Some(connector),
        );
        let timeout = self.inner.options.connect_timeout;
        match tokio::time::timeout(timeout, connecting).await {
            Err(_) => Err(Error::Timeout {
                what,
                secs: timeout.as_secs_f64(),
            }),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                Err(refused_upgrade(what, *response))
            }
            Ok(Err(e)) => Err(Error::WebSocket {
                what,
                source: Box::new(e),
            }),
            Ok(Ok((socket, _response))) => Ok(socket),
        }
    }
}

/// One HTTP call, as [`Client::call`] takes it, for whichever server it goes to.
struct Call<'a, T> {
    method: Method,
    path: &'a str,
    query: &'a [(&'a str, String)],
    body: Option<String>,
    parse: fn(&str) -> Result<Envelope<T>, WireError>,
}

/// A server's base URL from `url` as given: http(s) (ws(s) taken as the same), no query or
/// fragment, the path ending in `/`.
fn parse_base(url: &str) -> Result<Url, Error> {
    let bad = |why: &str| Error::Url {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let mut base = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let secure = match base.scheme() {
        "http" | "ws" => false,
        "https" | "wss" => true,
        other => {
            return Err(bad(&format!(
                "the scheme must be http or https, not {other}"
            )))
        }
    };
    if base.query().is_some() || base.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    base.set_scheme(if secure { "https" } else { "http" })
        .map_err(|()| bad("its scheme cannot be changed"))?;
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

fn without_slash(base: &Url) -> String {
    base.as_str().trim_end_matches('/').to_owned()
}

/// The URL of `path` (relative to `base`) with `query`.
fn join(base: &Url, path: &str, query: &[(&str, String)]) -> Result<Url, Error> {
    let mut url = base.join(path).map_err(|e| Error::Url {
        url: format!("{base}{path}"),
        why: e.to_string(),
    })?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

/// Whether a try that failed with `error` may go to another server: `Some` with the leader a
/// standby named (if it named a usable one), `None` when the error is the answer. A request
/// that never reached a server, or reached a standby (which carries out nothing), may;
/// one whose connection failed after it was sent only when `resend`.
fn elsewhere(error: &Error, resend: bool) -> Option<Option<Url>> {
    match error {
        Error::Refused { refusal, .. } if refusal.error_code() == Some(ErrorCode::NotLeader) => {
            Some(refusal.leader.as_deref().and_then(|l| parse_base(l).ok()))
        }
        Error::Http { source, .. } if source.is_connect() || resend => Some(None),
        Error::WebSocket { .. } | Error::Timeout { .. } if resend => Some(None),
        _ => None,
    }
}

/// The error for an upgrade answered with an HTTP error: the envelope's refusal when the body
/// came with it, else one made from the status.
fn refused_upgrade(
    what: String,
    response: tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>,
) -> Error {
    let status = response.status();
    let body = response.into_body().unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    if let Ok(Envelope::Refused(refusal)) = Envelope::parse(&text) {
        return Error::Refused {
            what,
            refusal: Box::new(refusal),
        };
    }
    let code = ErrorCode::ALL
        .into_iter()
        .find(|c| c.http_status() == status.as_u16())
        .map_or_else(|| "upgrade_refused".to_owned(), |c| c.as_str().to_owned());
    Error::Refused {
        what,
        refusal: Box::new(wire::Refusal {
            status: status.as_u16(),
            code,
            message: format!("the websocket upgrade was refused with {status}"),
            explain: None,
            leader: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_and_bad_ones_named() {
        let plain = Client::new("ws://127.0.0.1:9/prefix", ClientOptions::default()).unwrap();
        assert_eq!(plain.url(), "http://127.0.0.1:9/prefix");
        assert_eq!(
            join(
                &plain.servers().current().clone(),
                "inventory/",
                &[("tags", "a,b".into())]
            )
            .unwrap()
            .as_str(),
            "http://127.0.0.1:9/prefix/inventory/?tags=a%2Cb"
        );
        for bad in ["ftp://host", "not a url", "http://host/?q=1"] {
            let err = Client::new(bad, ClientOptions::default()).unwrap_err();
            assert!(
                matches!(&err, Error::Url { url, .. } if url == bad),
                "{err}"
            );
            assert_eq!(err.code(), "url");
        }
        let err = Client::new("http://a:1, ftp://b", ClientOptions::default()).unwrap_err();
        assert!(
            matches!(&err, Error::Url { url, .. } if url == "ftp://b"),
            "{err}"
        );
        let two = Client::new("http://a:1, ws://b:2/p", ClientOptions::default()).unwrap();
        assert_eq!(two.urls(), ["http://a:1", "http://b:2/p"]);
        let none: [&str; 0] = [];
        assert_eq!(
            Client::with_urls(none, ClientOptions::default())
                .unwrap_err()
                .code(),
            "url"
        );
        let options = ClientOptions {
            token: Some("bad\ntoken".into()),
            ..ClientOptions::default()
        };
        assert!(matches!(
            Client::new("http://host", options),
            Err(Error::Token)
        ));
    }

    #[test]
    fn a_backup_is_named_only_by_a_plain_file_name() {
        let named = |d: &str| attachment_name(d);
        assert_eq!(
            named("attachment; filename=\"snapshot-00000000000000000042.snap\"").as_deref(),
            Some("snapshot-00000000000000000042.snap")
        );
        for bad in [
            "attachment",
            "attachment; filename=\"\"",
            "attachment; filename=\"../etc/passwd\"",
            "attachment; filename=\"..\"",
        ] {
            assert_eq!(named(bad), None, "{bad}");
        }
    }
}
