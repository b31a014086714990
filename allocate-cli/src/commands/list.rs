//! `ls`, `show`, `watch` and `inventory`: what is held and what the lab has.

use super::Ctx;
use crate::exit::{CliError, CliResult};
use crate::output::{
    allocation_block, allocations_table, event_text, explanation_text, inventory_table, print_json,
    print_json_line,
};
use crate::units::unix_now;
use allocate_client::{AllocationInfo, InventoryFilter, ResourceState};
use uuid::Uuid;

/// The live allocations the caller may see: their own, or everyone's with `all`.
pub async fn live_allocations(ctx: &Ctx, all: bool) -> CliResult<Vec<AllocationInfo>> {
    let mut list = ctx.client.allocations().await?;
    list.retain(|a| {
        matches!(a.state.as_str(), "queued" | "provisioning" | "ready")
            && (all || a.username == ctx.settings.username)
    });
    Ok(list)
}

/// `allocate ls [--all]`.
pub async fn ls(ctx: &Ctx, all: bool) -> CliResult {
    let list = live_allocations(ctx, all).await?;
    if ctx.json() {
        print_json(&list);
    } else if ctx.quiet {
        list.iter().for_each(|a| println!("{}", a.allocation_id));
    } else if list.is_empty() {
        eprintln!("no live allocations");
    } else {
        print!("{}", allocations_table(&list, unix_now()));
    }
    Ok(())
}

/// `allocate show ID`.
pub async fn show(ctx: &Ctx, id: Uuid) -> CliResult {
    let a = ctx.client.allocation(id).await?;
    if ctx.json() {
        print_json(&a);
    } else {
        print!("{}", allocation_block(&a, unix_now()));
    }
    Ok(())
}

/// `allocate why ID`: why a live request is or is not served now.
pub async fn why(ctx: &Ctx, id: Uuid) -> CliResult {
    let explanation = ctx.client.explain(id).await?;
    if ctx.json() {
        print_json(&explanation);
    } else {
        print!("{}", explanation_text(&explanation));
    }
    Ok(())
}

/// `allocate watch ID`: the allocation's current state, then each event as it comes, until
/// it ends (a refusal, such as an ended or unknown id, exits with its code).
pub async fn watch(ctx: &Ctx, id: Uuid) -> CliResult {
    let allocation = ctx.client.follow(id).await?;
    while let Some(event) = allocation.next_event().await? {
        if ctx.json() {
            print_json_line(&event);
        } else if ctx.quiet {
            println!("{}", event.status());
        } else {
            print!("{}", event_text(&event, unix_now()));
        }
    }
    Ok(())
}

/// `allocate inventory [--tags a,b] [--state free]`.
pub async fn inventory(ctx: &Ctx, tags: Vec<String>, state: Option<String>) -> CliResult {
    let state = match state {
        Some(s) => Some(ResourceState::parse(&s).ok_or_else(|| {
            let known: Vec<&str> = ResourceState::ALL.iter().map(|s| s.as_str()).collect();
            CliError::usage(format!(
                "--state {s:?} is not a state (one of {})",
                known.join(", ")
            ))
        })?),
        None => None,
    };
    let list = ctx
        .client
        .inventory(&InventoryFilter { tags, state })
        .await?;
    if ctx.json() {
        print_json(&list);
    } else if ctx.quiet {
        list.iter().for_each(|r| println!("{}", r.inventory_id));
    } else {
        print!("{}", inventory_table(&list));
    }
    Ok(())
}
