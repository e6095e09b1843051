//! `tollgate audit list`: who changed which accounts, roles and keys, and when.

use chrono::{DateTime, Utc};
use serde_json::json;
use tollgate::proto::identity::v1 as pb;

use crate::CliResult;
use crate::output::{print, table, time};
use crate::remote::{Remote, status};

/// The actions as the CLI names them (and as identity-service stores them).
const ACTIONS: [(&str, pb::AuditAction); 8] = [
    ("tenant.created", pb::AuditAction::TenantCreated),
    ("user.created", pb::AuditAction::UserCreated),
    ("user.roles_updated", pb::AuditAction::UserRolesUpdated),
    ("user.deleted", pb::AuditAction::UserDeleted),
    ("api_key.created", pb::AuditAction::ApiKeyCreated),
    ("api_key.rotated", pb::AuditAction::ApiKeyRotated),
    ("api_key.deleted", pb::AuditAction::ApiKeyDeleted),
    ("api_key.revoked", pb::AuditAction::ApiKeyRevoked),
];

fn parse_action(s: &str) -> Result<pb::AuditAction, String> {
    ACTIONS
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, action)| *action)
        .ok_or_else(|| {
            let names: Vec<&str> = ACTIONS.iter().map(|(name, _)| *name).collect();
            format!("unknown action {s:?}: expected one of {}", names.join(", "))
        })
}

fn action_name(value: i32) -> &'static str {
    ACTIONS
        .iter()
        .find(|(_, action)| i32::from(*action) == value)
        .map_or("unknown", |(name, _)| *name)
}

/// Audit log commands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// List records, newest first (needs a person's key).
    List {
        /// Only changes made by this key (sec_…) or account (usr_…).
        #[arg(long)]
        actor: Option<String>,
        /// Only changes to this account, key or tenant.
        #[arg(long)]
        target: Option<String>,
        /// Only this action: tenant.created, user.created, user.roles_updated, user.deleted,
        /// api_key.created, api_key.rotated, api_key.deleted, api_key.revoked.
        #[arg(long, value_parser = parse_action)]
        action: Option<pb::AuditAction>,
        /// Only records at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Only records before this time (RFC 3339).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
        /// At most this many records.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Runs an audit command.
pub async fn audit(command: AuditCommand) -> CliResult {
    let AuditCommand::List {
        actor,
        target,
        action,
        from,
        to,
        limit,
        remote,
    } = command;
    let mut client = pb::audit_service_client::AuditServiceClient::new(remote.identity().await?);
    let events = Remote::all_pages(limit, async |page_token, wanted| {
        let request = remote.request(pb::ListAuditEventsRequest {
            page_size: i32::try_from(wanted.min(1000)).unwrap_or(1000),
            page_token,
            actor_id: actor.clone().unwrap_or_default(),
            target_id: target.clone().unwrap_or_default(),
            action: action.unwrap_or(pb::AuditAction::Unspecified).into(),
            start_time: from.map(tollgate::time::to_proto),
            end_time: to.map(tollgate::time::to_proto),
        })?;
        let page = client.list_audit_events(request).await.map_err(status)?;
        let page = page.into_inner();
        Ok((page.events, page.next_page_token))
    })
    .await?;
    let mut t = table(&["time", "action", "target", "actor", "address", "roles"]);
    for e in &events {
        let actor = if e.actor_command.is_empty() {
            format!("{} ({})", e.actor_key_id, e.actor_user_id)
        } else {
            e.actor_command.clone()
        };
        let roles = match (e.roles_before.is_empty(), e.roles_after.is_empty()) {
            (true, true) => String::new(),
            (true, false) => e.roles_after.join(", "),
            _ => format!(
                "{} -> {}",
                e.roles_before.join(", "),
                e.roles_after.join(", ")
            ),
        };
        let target = if e.replacement_id.is_empty() {
            e.target_id.clone()
        } else {
            format!("{} -> {}", e.target_id, e.replacement_id)
        };
        t.add_row(vec![
            time(e.time.as_ref()),
            action_name(e.action).into(),
            target,
            actor,
            e.actor_address.clone(),
            roles,
        ]);
    }
    let j = events
        .iter()
        .map(|e| {
            json!({
                "id": e.id, "time": time(e.time.as_ref()), "action": action_name(e.action),
                "target_id": e.target_id, "actor_key_id": e.actor_key_id,
                "actor_user_id": e.actor_user_id, "actor_command": e.actor_command,
                "actor_address": e.actor_address, "roles_before": e.roles_before,
                "roles_after": e.roles_after, "replacement_id": e.replacement_id,
            })
        })
        .collect::<Vec<_>>();
    print(remote.json, json!(j), t);
    Ok(())
}
