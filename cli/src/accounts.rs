//! `tollgate service-accounts …` and `tollgate keys …`.

use serde_json::json;
use tollgate::proto::identity::v1 as pb;
use tollgate::telemetry::parse_duration;

use crate::CliResult;
use crate::output::{print, table, time};
use crate::remote::{Remote, status};

/// Service-account commands.
#[derive(Debug, clap::Subcommand)]
pub enum AccountsCommand {
    /// Create a service account with one or more roles.
    Create {
        /// A role to give it (repeat for several): event_ingestor, event_reader.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// What it is for.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the tenant's service accounts.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one account.
    Get {
        /// The account's id (usr_…).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replace a service account's roles (existing keys keep theirs; create a new key).
    UpdateRoles {
        /// The account's id (usr_…).
        id: String,
        /// The new roles (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a service account and revoke all its keys.
    Delete {
        /// The account's id (usr_…).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Key commands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key for yourself or for a service account. The secret is printed once.
    Create {
        /// A descriptive name, e.g. production-event-service.
        #[arg(long)]
        name: String,
        /// The service account to create it for (default: yourself).
        #[arg(long)]
        service_account: Option<String>,
        /// Make it expire after this long, e.g. 90d.
        #[arg(long, value_parser = parse_duration)]
        expires_in: Option<std::time::Duration>,
        /// Pin it to the sandbox environment (sk_test_) instead of your key's environment.
        #[arg(long)]
        sandbox: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the tenant's keys (never the secrets).
    List {
        /// Only the keys of this account.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a key.
    Delete {
        /// The key's id (sec_…).
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replace a key: a new key (printed once) with the same name, owner, environment, expiry
    /// and roles; the old one keeps working for the grace period, then stops.
    Rotate {
        /// The key's id (sec_…).
        id: String,
        /// How long the old key keeps working: 0 ends it at once; at most 30d.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        grace: std::time::Duration,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Prints a new key with its secret, the one time it is shown.
fn print_new_key(json_mode: bool, k: &pb::CreateApiKeyResponse) {
    let mut t = table(&[
        "id",
        "name",
        "user_id",
        "environment",
        "roles",
        "expires_at",
    ]);
    t.add_row(vec![
        k.id.clone(),
        k.name.clone(),
        k.user_id.clone(),
        environment(k.environment).into(),
        k.roles.join(", "),
        time(k.expires_at.as_ref()),
    ]);
    let j = json!({
        "id": k.id, "name": k.name, "api_key": k.api_key, "user_id": k.user_id, "roles": k.roles,
        "environment": environment(k.environment), "created_at": time(k.created_at.as_ref()),
        "expires_at": time(k.expires_at.as_ref()), "display_hint": k.display_hint,
    });
    print(json_mode, j, t);
    if !json_mode {
        println!("api_key: {}", k.api_key);
        eprintln!("This is the only time the key is shown: store it now.");
    }
}

fn user_type(t: i32) -> &'static str {
    match pb::UserType::try_from(t) {
        Ok(pb::UserType::User) => "user",
        Ok(pb::UserType::ServiceAccount) => "service_account",
        _ => "unknown",
    }
}

fn environment(e: i32) -> &'static str {
    match pb::Environment::try_from(e) {
        Ok(pb::Environment::Production) => "production",
        Ok(pb::Environment::Sandbox) => "sandbox",
        _ => "unknown",
    }
}

fn user_json(u: &pb::User) -> serde_json::Value {
    json!({
        "id": u.id, "type": user_type(u.r#type), "name": u.name, "roles": u.roles,
        "created_at": time(u.created_at.as_ref()), "updated_at": time(u.updated_at.as_ref()),
    })
}

fn print_users(json_mode: bool, users: &[pb::User]) {
    let mut t = table(&["id", "type", "name", "roles", "created_at"]);
    for u in users {
        t.add_row(vec![
            u.id.clone(),
            user_type(u.r#type).into(),
            u.name.clone(),
            u.roles.join(", "),
            time(u.created_at.as_ref()),
        ]);
    }
    print(
        json_mode,
        json!(users.iter().map(user_json).collect::<Vec<_>>()),
        t,
    );
}

/// Runs a service-account command.
pub async fn accounts(command: AccountsCommand) -> CliResult {
    match command {
        AccountsCommand::Create {
            roles,
            name,
            remote,
        } => {
            let mut client =
                pb::user_service_client::UserServiceClient::new(remote.identity().await?);
            let request = remote.request(pb::CreateUserRequest {
                r#type: pb::UserType::ServiceAccount.into(),
                roles,
                name,
            })?;
            let user = client
                .create_user(request)
                .await
                .map_err(status)?
                .into_inner()
                .user
                .unwrap_or_default();
            print_users(remote.json, &[user]);
        }
        AccountsCommand::List { remote } => {
            let mut client =
                pb::user_service_client::UserServiceClient::new(remote.identity().await?);
            let users = Remote::all_pages(usize::MAX, async |page_token, _| {
                let request = remote.request(pb::ListUsersRequest {
                    page_size: 1000,
                    page_token,
                    r#type: pb::UserType::ServiceAccount.into(),
                })?;
                let page = client.list_users(request).await.map_err(status)?;
                let page = page.into_inner();
                Ok((page.users, page.next_page_token))
            })
            .await?;
            print_users(remote.json, &users);
        }
        AccountsCommand::Get { id, remote } => {
            let mut client =
                pb::user_service_client::UserServiceClient::new(remote.identity().await?);
            let user = client
                .get_user(remote.request(pb::GetUserRequest { id })?)
                .await
                .map_err(status)?
                .into_inner()
                .user
                .unwrap_or_default();
            print_users(remote.json, &[user]);
        }
        AccountsCommand::UpdateRoles { id, roles, remote } => {
            let mut client =
                pb::user_service_client::UserServiceClient::new(remote.identity().await?);
            let request = remote.request(pb::UpdateUserRolesRequest { id, roles })?;
            let user = client
                .update_user_roles(request)
                .await
                .map_err(status)?
                .into_inner()
                .user
                .unwrap_or_default();
            print_users(remote.json, &[user]);
            if !remote.json {
                eprintln!(
                    "Existing keys keep the roles they copied; create a new key to use the new roles."
                );
            }
        }
        AccountsCommand::Delete { id, remote } => {
            let mut client =
                pb::user_service_client::UserServiceClient::new(remote.identity().await?);
            let revoked = client
                .delete_user(remote.request(pb::DeleteUserRequest { id: id.clone() })?)
                .await
                .map_err(status)?
                .into_inner()
                .revoked_api_keys;
            let mut t = table(&["deleted", "revoked_api_keys"]);
            t.add_row(vec![id.clone(), revoked.to_string()]);
            print(
                remote.json,
                json!({ "deleted": id, "revoked_api_keys": revoked }),
                t,
            );
        }
    }
    Ok(())
}

/// Runs a key command.
pub async fn keys(command: KeysCommand) -> CliResult {
    match command {
        KeysCommand::Create {
            name,
            service_account,
            expires_in,
            sandbox,
            remote,
        } => {
            let mut client =
                pb::api_key_service_client::ApiKeyServiceClient::new(remote.identity().await?);
            let expires_at = expires_in
                .map(|d| {
                    chrono::Duration::from_std(d)
                        .map(|d| tollgate::time::to_proto(tollgate::time::now() + d))
                })
                .transpose()
                .map_err(|_| "--expires-in is too long")?;
            let request = remote.request(pb::CreateApiKeyRequest {
                name,
                service_account_id: service_account.unwrap_or_default(),
                expires_at,
                environment: if sandbox {
                    pb::Environment::Sandbox.into()
                } else {
                    pb::Environment::Unspecified.into()
                },
            })?;
            let k = client
                .create_api_key(request)
                .await
                .map_err(status)?
                .into_inner();
            print_new_key(remote.json, &k);
        }
        KeysCommand::Rotate { id, grace, remote } => {
            let mut client =
                pb::api_key_service_client::ApiKeyServiceClient::new(remote.identity().await?);
            let grace_period =
                prost_types::Duration::try_from(grace).map_err(|_| "--grace is too long")?;
            let rotated = client
                .rotate_api_key(remote.request(pb::RotateApiKeyRequest {
                    id,
                    grace_period: Some(grace_period),
                })?)
                .await
                .map_err(status)?
                .into_inner();
            let (new, old) = (
                rotated.key.unwrap_or_default(),
                rotated.replaced.unwrap_or_default(),
            );
            print_new_key(remote.json, &new);
            if !remote.json {
                eprintln!(
                    "{} keeps working until {}; replace it wherever it is used before then.",
                    old.id,
                    time(old.expires_at.as_ref())
                );
            }
        }
        KeysCommand::List { user, remote } => {
            let mut client =
                pb::api_key_service_client::ApiKeyServiceClient::new(remote.identity().await?);
            let keys = Remote::all_pages(usize::MAX, async |page_token, _| {
                let request = remote.request(pb::ListApiKeysRequest {
                    page_size: 1000,
                    page_token,
                    user_id: user.clone().unwrap_or_default(),
                })?;
                let page = client.list_api_keys(request).await.map_err(status)?;
                let page = page.into_inner();
                Ok((page.keys, page.next_page_token))
            })
            .await?;
            let mut t = table(&[
                "id",
                "name",
                "hint",
                "user_id",
                "environment",
                "roles",
                "last_used_at",
                "expires_at",
            ]);
            for k in &keys {
                let roles = if k.roles.is_empty() {
                    "(full access)".to_owned()
                } else {
                    k.roles.join(", ")
                };
                t.add_row(vec![
                    k.id.clone(),
                    k.name.clone(),
                    k.display_hint.clone(),
                    k.user_id.clone(),
                    environment(k.environment).into(),
                    roles,
                    time(k.last_used_at.as_ref()),
                    time(k.expires_at.as_ref()),
                ]);
            }
            let j = keys.iter().map(|k| json!({
                "id": k.id, "name": k.name, "display_hint": k.display_hint, "user_id": k.user_id,
                "user_type": user_type(k.user_type), "environment": environment(k.environment), "roles": k.roles,
                "created_at": time(k.created_at.as_ref()), "expires_at": time(k.expires_at.as_ref()),
                "last_used_at": time(k.last_used_at.as_ref()), "replaced_by": k.replaced_by,
            })).collect::<Vec<_>>();
            print(remote.json, json!(j), t);
        }
        KeysCommand::Delete { id, remote } => {
            let mut client =
                pb::api_key_service_client::ApiKeyServiceClient::new(remote.identity().await?);
            client
                .delete_api_key(remote.request(pb::DeleteApiKeyRequest { id: id.clone() })?)
                .await
                .map_err(status)?;
            let mut t = table(&["revoked"]);
            t.add_row(vec![id.clone()]);
            print(remote.json, json!({ "revoked": id }), t);
        }
    }
    Ok(())
}
