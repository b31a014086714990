//! `usage`: resource-hours and GPU-hours per user, label or resource.

use super::Ctx;
use crate::args::UsageGroup;
use crate::exit::{CliError, CliResult};
use crate::output::{print_json, usage_table};
use crate::units::{parse_time, unix_now};
use allocate_client::{UsageBy, UsageQuery};

/// `allocate usage [--by user|label|resource] [--from T] [--to T]`.
pub async fn usage(
    ctx: &Ctx,
    by: UsageGroup,
    from: Option<String>,
    to: Option<String>,
) -> CliResult {
    let (by, group) = match by {
        UsageGroup::User => (UsageBy::User, "USER"),
        UsageGroup::Label => (UsageBy::Label, "LABEL"),
        UsageGroup::Resource => (UsageBy::Resource, "RESOURCE"),
    };
    let query = UsageQuery {
        from: from.map(|t| when("--from", &t)).transpose()?,
        to: to.map(|t| when("--to", &t)).transpose()?,
        by,
    };
    let rows = ctx.client.usage(&query).await?;
    if ctx.json() {
        print_json(&rows);
    } else if ctx.quiet {
        rows.iter().for_each(|r| println!("{}", r.key));
    } else if rows.is_empty() {
        eprintln!("no usage in that window");
    } else {
        print!("{}", usage_table(group, &rows));
    }
    Ok(())
}

/// Unix seconds, or a time as `--until` takes it; errors name `flag`.
fn when(flag: &str, text: &str) -> CliResult<u64> {
    if let Ok(secs) = text.parse() {
        return Ok(secs);
    }
    parse_time(text, unix_now()).map_err(|e| CliError::usage(format!("{flag}: {e}")))
}
