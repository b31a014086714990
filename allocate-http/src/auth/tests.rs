use super::*;
use allocate_core::{AllocationState, ErrorCode};
use axum::http::HeaderValue;

fn user(name: &str) -> Caller {
    Caller::Bearer(Role::User(name.into()))
}

fn admin() -> Caller {
    Caller::Bearer(Role::Admin(Some("root".into())))
}

fn agent(id: Option<u128>) -> Caller {
    Caller::Bearer(Role::Agent(id.map(Uuid::from_u128)))
}

fn code(result: Result<(), ApiError>) -> Option<ErrorCode> {
    result.err().map(|e| match e {
        ApiError::Core(core) => core.code(),
        other => panic!("unexpected {other:?}"),
    })
}

fn allocation_of(username: &str) -> AllocationInfo {
    AllocationInfo {
        allocation_id: Uuid::from_u128(7),
        inventory_id: None,
        username: username.into(),
        state: AllocationState::Queued,
        created: 0,
        expires: 0,
        connection: None,
        position: Some(1),
        created_at: Default::default(),
    }
}

#[test]
fn admins_and_open_servers_may_do_everything() {
    for caller in [Caller::Anyone, admin()] {
        assert_eq!(code(caller.require_admin("x")), None);
        assert_eq!(code(caller.require_allocator("x")), None);
        assert_eq!(code(caller.require_agent()), None);
        assert_eq!(code(caller.check_username("anybody")), None);
        assert_eq!(code(caller.check_agent_id(Uuid::from_u128(3))), None);
        assert_eq!(code(caller.check_owner(&allocation_of("bob"))), None);
        assert!(caller.sees("bob"));
    }
}

#[test]
fn users_act_only_as_themselves() {
    let alice = user("alice");
    let forbidden = Some(ErrorCode::Forbidden);
    assert_eq!(code(alice.require_admin("x")), forbidden);
    assert_eq!(code(alice.require_agent()), forbidden);
    assert_eq!(code(alice.require_allocator("x")), None);
    assert_eq!(code(alice.check_username("alice")), None);
    assert_eq!(code(alice.check_username("bob")), forbidden);
    assert_eq!(code(alice.check_owner(&allocation_of("alice"))), None);
    assert_eq!(code(alice.check_owner(&allocation_of("bob"))), forbidden);
    assert!(alice.sees("alice") && !alice.sees("bob"));
}

#[test]
fn agents_serve_only_their_own_agent_id() {
    let forbidden = Some(ErrorCode::Forbidden);
    let bound = agent(Some(1));
    assert_eq!(code(bound.require_agent()), None);
    assert_eq!(code(bound.check_agent_id(Uuid::from_u128(1))), None);
    assert_eq!(code(bound.check_agent_id(Uuid::from_u128(2))), forbidden);
    let any = agent(None);
    assert_eq!(code(any.check_agent_id(Uuid::from_u128(2))), None);
    for caller in [bound, any] {
        assert_eq!(code(caller.require_admin("x")), forbidden);
        assert_eq!(code(caller.require_allocator("x")), forbidden);
        assert_eq!(code(caller.check_username("alice")), forbidden);
        assert_eq!(code(caller.check_owner(&allocation_of("alice"))), forbidden);
        assert!(!caller.sees("alice"));
    }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

#[test]
fn the_token_comes_from_the_header_or_an_offered_subprotocol() {
    let token = |pairs: &[(&'static str, &str)]| bearer_token(&headers(pairs)).map(str::to_owned);
    assert_eq!(token(&[("authorization", "Bearer abc")]), Ok("abc".into()));
    assert_eq!(
        token(&[("authorization", "bearer  abc ")]),
        Ok("abc".into())
    );
    assert_eq!(token(&[("authorization", "Bearer\tabc")]), Ok("abc".into()));
    assert_eq!(token(&[]), Err(Unauthorized::Missing));
    assert_eq!(
        token(&[("authorization", "Basic YWxhZGRpbg==")]),
        Err(Unauthorized::Malformed)
    );
    assert_eq!(
        token(&[("authorization", "Bearer")]),
        Err(Unauthorized::Malformed)
    );
    assert_eq!(
        token(&[("authorization", "Bearer ")]),
        Err(Unauthorized::Malformed)
    );
    assert_eq!(
        token(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "allocate, bearer.abc")
        ]),
        Ok("abc".into())
    );
    assert_eq!(
        token(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "allocate"),
            ("sec-websocket-protocol", "bearer.xyz")
        ]),
        Ok("xyz".into())
    );
    assert_eq!(
        token(&[
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", "allocate, bearer.")
        ]),
        Err(Unauthorized::Missing)
    );
    assert_eq!(
        token(&[
            ("authorization", "Bearer h"),
            ("sec-websocket-protocol", "bearer.s")
        ]),
        Ok("h".into()),
        "the header wins"
    );
    assert_eq!(
        token(&[("sec-websocket-protocol", "bearer.abc")]),
        Err(Unauthorized::Missing),
        "only on a websocket upgrade"
    );
}

#[test]
fn callers_show_their_role_and_name_but_no_token() {
    assert_eq!(admin().to_string(), "admin root");
    assert_eq!(user("alice").to_string(), "user alice");
    assert_eq!(
        agent(Some(1)).to_string(),
        "agent 00000000-0000-0000-0000-000000000001"
    );
    assert_eq!(agent(None).to_string(), "agent");
    assert!(Caller::Anyone.to_string().contains("open"));
}
