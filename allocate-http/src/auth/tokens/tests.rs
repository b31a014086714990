use super::*;

const ALICE: &str = "alice-token-0123456789";
const AGENT_ID: &str = "d4863713-1388-4297-a479-a582b306f5cb";

fn hex(digest: &TokenDigest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn lines_give_roles_and_skip_comments() {
    let text = format!(
        "# who may do what\n\n  {ALICE}\tuser alice\nagent-token-0123456789 agent\n\
         bound-agent-0123456789 agent {AGENT_ID}\nadmin-token-0123456789 admin root\n\
         anon-admin-0123456789== admin\n"
    );
    let table = TokenTable::parse(&text).unwrap();
    assert_eq!(table.len(), 5);
    assert_eq!(table.role_of(ALICE), Some(&Role::User("alice".into())));
    assert_eq!(
        table.role_of("agent-token-0123456789"),
        Some(&Role::Agent(None))
    );
    let bound = Uuid::parse_str(AGENT_ID).unwrap();
    assert_eq!(
        table.role_of("bound-agent-0123456789"),
        Some(&Role::Agent(Some(bound)))
    );
    assert_eq!(
        table.role_of("admin-token-0123456789"),
        Some(&Role::Admin(Some("root".into())))
    );
    assert_eq!(
        table.role_of("anon-admin-0123456789=="),
        Some(&Role::Admin(None))
    );
    assert_eq!(table.role_of("alice-token-012345678"), None, "a prefix");
    assert_eq!(table.role_of(""), None);
}

#[test]
fn a_digest_stands_for_its_token() {
    let digest = hex(&sha256(ALICE.as_bytes()));
    let table = TokenTable::parse(&format!("sha256:{digest} user alice")).unwrap();
    assert_eq!(table.role_of(ALICE), Some(&Role::User("alice".into())));
    assert_eq!(table.role_of(&format!("sha256:{digest}")), None);
    let upper = digest.to_uppercase();
    let again = format!("{ALICE} admin\nsha256:{upper} user alice");
    assert_eq!(
        TokenTable::parse(&again),
        Err((2, LineProblem::Duplicate(1)))
    );
}

#[test]
fn bad_lines_name_their_number_and_problem() {
    let cases = [
        (ALICE.to_owned(), LineProblem::Fields),
        (format!("{ALICE} user alice extra"), LineProblem::Fields),
        (
            "short-token user alice".to_owned(),
            LineProblem::TokenSyntax,
        ),
        (
            "token-with-a-quote\"123 user a".to_owned(),
            LineProblem::TokenSyntax,
        ),
        (
            "================ admin".to_owned(),
            LineProblem::TokenSyntax,
        ),
        (
            "sha256:abc user alice".to_owned(),
            LineProblem::DigestSyntax,
        ),
        (format!("{ALICE} root"), LineProblem::Role),
        (format!("{ALICE} user"), LineProblem::MissingUsername),
        (format!("{ALICE} agent gpu-07"), LineProblem::AgentId),
        (
            format!("{ALICE} admin root groups=ops"),
            LineProblem::GroupsRole,
        ),
        (format!("{ALICE} agent groups=ops"), LineProblem::GroupsRole),
        (
            format!("{ALICE} user alice groups="),
            LineProblem::GroupName,
        ),
        (
            format!("{ALICE} user alice groups=a,,b"),
            LineProblem::GroupName,
        ),
        (
            format!("{ALICE} user alice groups=a b"),
            LineProblem::Fields,
        ),
        (
            format!("{ALICE} user groups=a"),
            LineProblem::MissingUsername,
        ),
        (
            format!("{ALICE} admin\n{ALICE} user alice"),
            LineProblem::Duplicate(2),
        ),
    ];
    for (text, problem) in cases {
        let text = format!("# header\n{text}");
        let (line, got) = TokenTable::parse(&text).unwrap_err();
        assert_eq!(got, problem, "{text}");
        let expected_line = if matches!(problem, LineProblem::Duplicate(_)) {
            3
        } else {
            2
        };
        assert_eq!(line, expected_line, "{text}");
        // The message explains the rule; it never quotes the line.
        assert!(!problem.to_string().contains(ALICE));
    }
}

#[test]
fn user_tokens_may_name_quota_groups() {
    let text = format!(
        "{ALICE} user alice groups=students,gpu-night\n\
         alice-laptop-0123456789 user alice groups=students\n\
         bob-token-0123456789 user bob groups=students\n\
         carl-token-0123456789 user carl\n\
         admin-token-0123456789 admin groups\n"
    );
    let table = TokenTable::parse(&text).unwrap();
    assert_eq!(table.len(), 5);
    assert_eq!(table.role_of(ALICE), Some(&Role::User("alice".into())));
    assert_eq!(
        table.role_of("admin-token-0123456789"),
        Some(&Role::Admin(Some("groups".into()))),
        "a name, not a groups field"
    );
    let members = |group: &str| -> Vec<&str> {
        table.group_members()[group]
            .iter()
            .map(String::as_str)
            .collect()
    };
    assert_eq!(members("students"), ["alice", "bob"]);
    assert_eq!(members("gpu-night"), ["alice"]);
    assert_eq!(table.group_members().len(), 2);
    // A file without `groups=` reads as before.
    let old = TokenTable::parse(&format!("{ALICE} user alice\n")).unwrap();
    assert!(old.group_members().is_empty());
}

#[test]
fn equal_digests_only() {
    let a = sha256(b"one");
    let mut b = a;
    assert!(digests_equal(&a, &b));
    b[31] ^= 1;
    assert!(!digests_equal(&a, &b));
    b = a;
    b[0] ^= 0x80;
    assert!(!digests_equal(&a, &b));
}

#[test]
fn debug_shows_no_digest() {
    let table = TokenTable::parse(&format!("{ALICE} user alice")).unwrap();
    let debug = format!("{table:?}");
    assert_eq!(debug, "TokenTable { tokens: 1 }");
    assert!(!debug.contains(&hex(&sha256(ALICE.as_bytes()))[..8]));
}

/// A file in a fresh folder, removed at the end.
struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    fn new(text: &str, mode: u32) -> TempFile {
        let dir = std::env::temp_dir().join(format!("allocate-tokens-{}", Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("tokens");
        std::fs::write(&path, text).unwrap();
        set_mode(&path, mode);
        TempFile { dir, path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) {}

#[cfg(unix)]
#[test]
fn a_file_others_may_read_is_refused() {
    for mode in [0o644, 0o640, 0o604, 0o601, 0o610] {
        let file = TempFile::new(&format!("{ALICE} user alice"), mode);
        let err = Tokens::load(&file.path).unwrap_err();
        assert!(matches!(err, TokensError::Permissions { mode: m, .. } if m == mode));
        let message = err.to_string();
        assert!(message.contains("chmod 600"), "{message}");
        assert!(!message.contains(ALICE));
    }
    for mode in [0o600, 0o400] {
        let file = TempFile::new(&format!("{ALICE} user alice"), mode);
        assert_eq!(Tokens::load(&file.path).unwrap().count(), 1);
    }
}

#[test]
fn load_and_reload() {
    let file = TempFile::new(&format!("{ALICE} user alice"), 0o600);
    let tokens = Tokens::load(&file.path).unwrap();
    assert!(!tokens.is_open());
    let shared = tokens.clone();
    std::fs::write(
        &file.path,
        "bob-token-0123456789 user bob\nnew-admin-0123456789 admin",
    )
    .unwrap();
    assert_eq!(tokens.reload().unwrap(), 2);
    let table = shared.table().unwrap();
    assert_eq!(table.role_of(ALICE), None, "clones see the reload");
    assert_eq!(
        table.role_of("bob-token-0123456789"),
        Some(&Role::User("bob".into()))
    );

    std::fs::write(&file.path, "# nothing\n").unwrap();
    assert!(matches!(tokens.reload(), Err(TokensError::Empty { .. })));
    std::fs::write(&file.path, "bob-token-0123456789 usr bob").unwrap();
    let err = tokens.reload().unwrap_err();
    assert!(matches!(
        err,
        TokensError::Line {
            line: 1,
            problem: LineProblem::Role,
            ..
        }
    ));
    assert!(!err.to_string().contains("bob-token"));
    assert_eq!(
        tokens.count(),
        2,
        "a bad file keeps the tokens loaded before"
    );

    let missing = file.dir.join("missing");
    assert!(matches!(
        Tokens::load(&missing),
        Err(TokensError::Read { .. })
    ));
    assert!(Tokens::default().is_open());
    assert_eq!(Tokens::default().reload().unwrap(), 0);
    assert_eq!(Tokens::default(), Tokens::default());
    assert_ne!(tokens, Tokens::default());
}

/// Whether `revocation` has completed, without waiting for it.
fn is_revoked(revocation: &mut Revocation) -> bool {
    use std::future::Future as _;
    let mut revoked = std::pin::pin!(revocation.revoked());
    let waker = std::task::Waker::noop();
    revoked
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker))
        .is_ready()
}

#[test]
fn a_reload_revokes_a_token_it_takes_away_or_gives_another_role() {
    let alice = format!("{ALICE} user alice\n");
    let bob = "bob-token-0123456789 user bob\n";
    let file = TempFile::new(&format!("{alice}{bob}"), 0o600);
    let tokens = Tokens::load(&file.path).unwrap();
    let credential = |token: &str| tokens.table().unwrap().credential_of(token);
    let mut of_alice = tokens.revocation(credential(ALICE));
    let mut of_bob = tokens.revocation(credential("bob-token-0123456789"));
    assert_eq!(
        format!("{:?}", credential(ALICE).unwrap()),
        "Credential { role: User(\"alice\"), .. }"
    );
    assert!(!is_revoked(&mut of_alice), "a reload that kept it");
    std::fs::write(&file.path, format!("{alice}{bob}# a comment\n")).unwrap();
    tokens.reload().unwrap();
    assert!(!is_revoked(&mut of_alice));
    std::fs::write(&file.path, format!("{ALICE} user carol\n{bob}")).unwrap();
    tokens.reload().unwrap();
    assert!(is_revoked(&mut of_alice), "another role");
    assert!(!is_revoked(&mut of_bob));
    std::fs::write(&file.path, alice).unwrap();
    tokens.reload().unwrap();
    assert!(is_revoked(&mut of_bob), "taken away");
    let mut open = Tokens::default().revocation(None);
    assert!(!is_revoked(&mut open), "an open server revokes nothing");
}
