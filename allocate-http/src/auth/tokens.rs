//! The tokens file and the table read from it.
//!
//! One token per line: `TOKEN ROLE [NAME] [groups=GROUP,...]`, fields separated by spaces or
//! tabs; blank lines and lines starting with `#` are skipped. `TOKEN` is the token itself or
//! `sha256:` and the hex digest of it. `ROLE` is `agent` (NAME, optional: the one `agent_id` it
//! may register), `user` (NAME, required: the username it allocates as) or `admin` (NAME,
//! optional: shown in logs). Only a user token may end with `groups=`: the quota groups its
//! username belongs to, besides those the policy file lists it in.
//! Only SHA-256 digests are kept in memory; a presented token is hashed and compared with
//! every digest in constant time. No error names or quotes a token.

use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::watch;
use uuid::Uuid;

/// Shortest token accepted in the file (a guessable token is no protection).
pub const TOKEN_CHARS_MIN: usize = 16;

/// Prefix of a token given as its SHA-256 digest in hex.
const DIGEST_PREFIX: &str = "sha256:";

/// Prefix of the field that names a user token's quota groups.
const GROUPS_PREFIX: &str = "groups=";

/// Longest group name (the contract's string limit).
const GROUP_CHARS_MAX: usize = 256;

/// A SHA-256 digest of a token.
type TokenDigest = [u8; 32];

/// What a token lets its bearer do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Serves `/agent/`; bound to this `agent_id` when the file names one.
    Agent(Option<Uuid>),
    /// Allocates as this username and sees only its own allocations.
    User(String),
    /// Does everything; the name, if any, is shown in logs.
    Admin(Option<String>),
}

/// What is wrong with one line of a tokens file. Never quotes the line, which may hold a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum LineProblem {
    /// Not two or three fields, and a fourth that is not `groups=`.
    #[error("expected `TOKEN ROLE [NAME] [groups=GROUP,...]`")]
    Fields,
    /// The token is too short or has a character a bearer token cannot have.
    #[error(
        "a token must be at least {TOKEN_CHARS_MIN} characters among letters, digits and \
         `-._~+/` (then optional `=`)"
    )]
    TokenSyntax,
    /// `sha256:` followed by something other than 64 hex digits.
    #[error("after `sha256:` must come 64 hexadecimal digits")]
    DigestSyntax,
    /// The second field is not a role.
    #[error("the role (second field) must be agent, user or admin")]
    Role,
    /// A user token without its username.
    #[error("a user token needs a username (third field)")]
    MissingUsername,
    /// An agent token bound to something other than a UUID.
    #[error("an agent token's third field must be the agent_id (a UUID) it is bound to")]
    AgentId,
    /// `groups=` on a token that is not a user's.
    #[error("only a user token may name groups (`groups=`)")]
    GroupsRole,
    /// `groups=` with an empty or malformed group name.
    #[error(
        "`groups=` takes group names separated by commas, each 1 to {GROUP_CHARS_MAX} \
         characters among letters, digits and `-._`"
    )]
    GroupName,
    /// The same token (or digest) twice.
    #[error("the token is already on line {0}")]
    Duplicate(usize),
}

/// Why a tokens file cannot be used.
#[derive(Debug, Error)]
pub enum TokensError {
    /// The file cannot be read.
    #[error("cannot read tokens file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Group or others have some access to the file (the ssh rule for private keys).
    #[error(
        "tokens file {path} is accessible by group or others (mode {mode:03o}); it holds \
         credentials, so only the server's user may read it: chmod 600 {path}"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A line cannot be read.
    #[error("tokens file {path}, line {line}: {problem}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: LineProblem,
    },
    /// The file has no token at all (it would lock everyone out).
    #[error("tokens file {path} holds no token")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The tokens of one file, as digests with their roles, and the quota groups that user
/// tokens name. `Debug` shows only how many tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenTable {
    entries: Vec<(TokenDigest, Role)>,
    /// Each group named by a user token's `groups=`, with those tokens' usernames.
    groups: BTreeMap<String, BTreeSet<String>>,
}

impl fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTable")
            .field("tokens", &self.entries.len())
            .finish()
    }
}

impl TokenTable {
    /// Reads the text of a tokens file; an error gives the 1-based line number.
    pub fn parse(text: &str) -> Result<TokenTable, (usize, LineProblem)> {
        let mut entries: Vec<(TokenDigest, Role)> = Vec::new();
        let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut lines_of: Vec<usize> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (digest, role, named) = parse_line(line).map_err(|p| (line_no, p))?;
            if let Some(at) = entries.iter().position(|(d, _)| *d == digest) {
                return Err((line_no, LineProblem::Duplicate(lines_of[at])));
            }
            if let Role::User(username) = &role {
                for group in named {
                    groups.entry(group).or_default().insert(username.clone());
                }
            }
            entries.push((digest, role));
            lines_of.push(line_no);
        }
        Ok(TokenTable { entries, groups })
    }

    /// Each quota group that user tokens name (`groups=`), with the usernames of those tokens.
    pub fn group_members(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.groups
    }

    /// How many tokens the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no token.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The role of `token`, if it is in the table.
    #[cfg(test)]
    pub fn role_of(&self, token: &str) -> Option<&Role> {
        self.find(&sha256(token.as_bytes()))
    }

    /// `token` as a [`Credential`], if it is in the table.
    pub fn credential_of(&self, token: &str) -> Option<Credential> {
        let digest = sha256(token.as_bytes());
        let role = self.find(&digest)?.clone();
        Some(Credential { digest, role })
    }

    /// Whether the table still gives `credential`'s token the same role.
    fn holds(&self, credential: &Credential) -> bool {
        self.find(&credential.digest) == Some(&credential.role)
    }

    /// The role of the token with `digest`. Compares it with every entry's without stopping
    /// at the first match or the first differing byte.
    fn find(&self, digest: &TokenDigest) -> Option<&Role> {
        let mut found = None;
        for (entry, role) in &self.entries {
            if digests_equal(entry, digest) {
                found = Some(role);
            }
        }
        found
    }
}

/// A token a request presented, kept as its digest and role (never the token itself): what
/// a socket remembers of the token it was opened with. `Debug` shows only the role.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    digest: TokenDigest,
    role: Role,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// What the token lets its bearer do.
    pub fn role(&self) -> &Role {
        &self.role
    }
}

/// One line that is neither blank nor a comment: the token's digest, its role and the groups
/// it names.
fn parse_line(line: &str) -> Result<(TokenDigest, Role, Vec<String>), LineProblem> {
    let mut fields: Vec<&str> = line.split_whitespace().collect();
    let groups = match fields.last().and_then(|f| f.strip_prefix(GROUPS_PREFIX)) {
        Some(list) if fields.len() > 2 => {
            fields.pop();
            parse_groups(list)?
        }
        _ => Vec::new(),
    };
    let (token, role, name) = match fields[..] {
        [token, role] => (token, role, None),
        [token, role, name] => (token, role, Some(name)),
        _ => return Err(LineProblem::Fields),
    };
    let digest = match token.strip_prefix(DIGEST_PREFIX) {
        Some(hex) => parse_hex_digest(hex).ok_or(LineProblem::DigestSyntax)?,
        None if is_token(token) => sha256(token.as_bytes()),
        None => return Err(LineProblem::TokenSyntax),
    };
    let role = match (role, name) {
        ("agent", None) => Role::Agent(None),
        ("agent", Some(id)) => {
            Role::Agent(Some(Uuid::try_parse(id).map_err(|_| LineProblem::AgentId)?))
        }
        ("user", Some(username)) => Role::User(username.to_owned()),
        ("user", None) => return Err(LineProblem::MissingUsername),
        ("admin", name) => Role::Admin(name.map(str::to_owned)),
        _ => return Err(LineProblem::Role),
    };
    if !groups.is_empty() && !matches!(role, Role::User(_)) {
        return Err(LineProblem::GroupsRole);
    }
    Ok((digest, role, groups))
}

/// The group names of a `groups=` field (after the prefix): comma-separated, none empty.
fn parse_groups(list: &str) -> Result<Vec<String>, LineProblem> {
    list.split(',')
        .map(|name| {
            let fits = (1..=GROUP_CHARS_MAX).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            fits.then(|| name.to_owned()).ok_or(LineProblem::GroupName)
        })
        .collect()
}

/// Whether `token` is long enough and fits RFC 6750's `b64token` (what `Bearer` may carry).
fn is_token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    token.len() >= TOKEN_CHARS_MIN
        && !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn parse_hex_digest(hex: &str) -> Option<TokenDigest> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

fn sha256(bytes: &[u8]) -> TokenDigest {
    Sha256::digest(bytes).into()
}

/// Compares two digests in time that does not depend on where they differ.
fn digests_equal(a: &TokenDigest, b: &TokenDigest) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the compiler from turning the fold back into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

/// The server's bearer tokens: none (the server runs open), or the table of a file that
/// [`Tokens::reload`] reads again. Clones share the table.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    file: Option<Arc<TokensFile>>,
}

#[derive(Debug)]
struct TokensFile {
    path: PathBuf,
    /// Read by every request, replaced by a reload, watched by the sockets opened with a
    /// token; never borrowed across an `.await`.
    table: watch::Sender<Arc<TokenTable>>,
}

impl PartialEq for Tokens {
    fn eq(&self, other: &Tokens) -> bool {
        match (&self.file, &other.file) {
            (None, None) => true,
            (Some(a), Some(b)) => a.path == b.path && *a.current() == *b.current(),
            _ => false,
        }
    }
}

impl Eq for Tokens {}

impl TokensFile {
    fn current(&self) -> Arc<TokenTable> {
        self.table.borrow().clone()
    }
}

impl Tokens {
    /// Reads the tokens file at `path`, which only its owner may access.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let table = read_file(path)?;
        Ok(Tokens {
            file: Some(Arc::new(TokensFile {
                path: path.to_owned(),
                table: watch::Sender::new(Arc::new(table)),
            })),
        })
    }

    /// Whether no tokens are configured, so that every caller may do everything.
    pub fn is_open(&self) -> bool {
        self.file.is_none()
    }

    /// How many tokens are loaded (0 when open).
    pub fn count(&self) -> usize {
        self.file.as_ref().map_or(0, |f| f.current().len())
    }

    /// Reads the file again and, if it is valid, uses it from the next request on; on an
    /// error the tokens loaded before stay. Returns how many tokens are now loaded.
    pub fn reload(&self) -> Result<usize, TokensError> {
        let Some(file) = &self.file else {
            return Ok(0);
        };
        let table = read_file(&file.path)?;
        let count = table.len();
        file.table.send_replace(Arc::new(table));
        Ok(count)
    }

    /// What completes when a reload takes `credential`'s token away (or gives it another
    /// role); `None` (the server runs open) never completes.
    pub fn revocation(&self, credential: Option<Credential>) -> Revocation {
        let watching = self
            .file
            .as_ref()
            .zip(credential)
            .map(|(file, credential)| {
                let mut table = file.table.subscribe();
                // A reload between the request and now counts too.
                table.mark_changed();
                (table, credential)
            });
        Revocation { watching }
    }

    /// The table, now and after every reload; `None` when the server runs open.
    pub(crate) fn subscribe(&self) -> Option<watch::Receiver<Arc<TokenTable>>> {
        self.file.as_ref().map(|f| f.table.subscribe())
    }

    /// The current table, `None` when the server runs open.
    pub(crate) fn table(&self) -> Option<Arc<TokenTable>> {
        self.file.as_ref().map(|f| f.current())
    }
}

/// Watches one token for a reload that takes it away: see [`Tokens::revocation`].
#[derive(Debug)]
pub struct Revocation {
    watching: Option<(watch::Receiver<Arc<TokenTable>>, Credential)>,
}

impl Revocation {
    /// Completes once the token is no longer in the table with its role; pending for ever
    /// when nothing is watched. Cancel-safe: a reload it saw but did not act on is checked
    /// again.
    pub async fn revoked(&mut self) {
        let Some((table, credential)) = &mut self.watching else {
            return std::future::pending().await;
        };
        loop {
            if table.changed().await.is_err() {
                return std::future::pending().await;
            }
            if !table.borrow_and_update().holds(credential) {
                return;
            }
        }
    }
}

fn read_file(path: &Path) -> Result<TokenTable, TokensError> {
    check_permissions(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
        path: path.to_owned(),
        source,
    })?;
    let table = TokenTable::parse(&text).map_err(|(line, problem)| TokensError::Line {
        path: path.to_owned(),
        line,
        problem,
    })?;
    if table.is_empty() {
        return Err(TokensError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(table)
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), TokensError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(|source| TokensError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        Ok(())
    } else {
        Err(TokensError::Permissions {
            path: path.to_owned(),
            mode,
        })
    }
}

/// Elsewhere there are no mode bits to check.
#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<(), TokensError> {
    Ok(())
}

#[cfg(test)]
mod tests;
