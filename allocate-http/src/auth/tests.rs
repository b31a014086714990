use super::*;
use allocate_core::{AllocationState, ErrorCode};

fn user(name: &str) -> Caller {
    Caller::Bearer(Role::User(name.into()))
}

fn admin() -> Caller {
    Caller::Bearer(Role::Admin(Some("root".into())))
}

fn agent(id: Option<u128>) -> Caller {
    Caller::Bearer(Role::Agent(id.map(Uuid::from_u128)))
}

fn code(result: Result<(), Error>) -> Option<ErrorCode> {
    result.err().map(|e| e.code())
}

fn allocation_of(username: &str) -> AllocationInfo {
    AllocationInfo {
        allocation_id: Uuid::from_u128(7),
        inventory_id: None,
        inventory_ids: vec![],
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
