//! The key lifecycle: rotation with a grace period, the audit log, and the revocation stream.

use std::time::Duration;

use tokio_stream::StreamExt;

use crate::*;

fn rotate(id: &str, grace: Option<Duration>) -> pb::RotateApiKeyRequest {
    pb::RotateApiKeyRequest {
        id: id.into(),
        grace_period: grace.map(|g| g.try_into().unwrap()),
    }
}

async fn rotated(
    app: &TestIdentity,
    id: &str,
    grace: Option<Duration>,
) -> pb::RotateApiKeyResponse {
    app.keys()
        .rotate_api_key(with_key(app.admin(), rotate(id, grace)))
        .await
        .unwrap()
        .into_inner()
}

async fn get_key(app: &TestIdentity, id: &str) -> pb::ApiKey {
    app.keys()
        .get_api_key(with_key(
            app.admin(),
            pb::GetApiKeyRequest { id: id.into() },
        ))
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap()
}

fn secs(t: &prost_types::Timestamp) -> i64 {
    t.seconds
}

#[tokio::test]
async fn a_rotated_key_keeps_its_roles_and_both_work_during_the_grace() {
    let app = TestIdentity::spawn().await;
    let sa = app.service_account(&["event_ingestor"]).await;
    let old = app.key_for(Some(&sa)).await;
    // The account's roles change afterwards: the rotation must not hand them to the new key.
    app.users()
        .update_user_roles(with_key(
            app.admin(),
            pb::UpdateUserRolesRequest {
                id: sa.clone(),
                roles: vec!["event_reader".into()],
            },
        ))
        .await
        .unwrap();

    let before = chrono::Utc::now().timestamp();
    let response = rotated(&app, &old.id, Some(Duration::from_secs(3600))).await;
    let new = response.key.unwrap();
    let replaced = response.replaced.unwrap();
    assert_ne!(new.id, old.id);
    assert_ne!(new.api_key, old.api_key);
    assert!(new.api_key.starts_with("sk_live_"));
    assert_eq!(
        (new.name.as_str(), new.user_id.as_str()),
        ("test key", sa.as_str())
    );
    assert_eq!(new.roles, ["event_ingestor"]);
    assert_eq!(new.expires_at, old.expires_at);
    assert_eq!(replaced.id, old.id);
    assert_eq!(replaced.replaced_by, new.id);
    let grace_end = secs(replaced.expires_at.as_ref().unwrap());
    assert!((before + 3600..=chrono::Utc::now().timestamp() + 3600).contains(&grace_end));

    // Both keys work, with the old key's roles, and the old one says when it stops.
    for key in [&old.api_key, &new.api_key] {
        let write = app.authorize(key, "event:write").await;
        assert!(write.allowed, "{write:?}");
        assert_eq!(write.principal.unwrap().roles, ["event_ingestor"]);
        assert!(!app.authorize(key, "event:read").await.allowed);
    }
    let old_decision = app.authorize(&old.api_key, "event:write").await;
    assert_eq!(old_decision.expires_at.map(|t| t.seconds), Some(grace_end));

    // The record names its replacement; no record carries a secret.
    let stored = get_key(&app, &old.id).await;
    assert_eq!(stored.replaced_by, new.id);
    assert_eq!(get_key(&app, &new.id).await.replaced_by, "");
    let listed = app
        .keys()
        .list_api_keys(with_key(app.admin(), pb::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let text = format!("{listed:?}{stored:?}");
    assert!(!text.contains(&new.api_key) && !text.contains(&old.api_key));
    app.stop().await;
}

#[tokio::test]
async fn the_old_key_is_refused_once_its_grace_is_over() {
    let app = TestIdentity::spawn().await;
    // Grace 0: refused at once.
    let key = app.key_for(None).await;
    let new = rotated(&app, &key.id, Some(Duration::ZERO))
        .await
        .key
        .unwrap();
    let decision = app.authorize(&key.api_key, "event:read").await;
    assert!(!decision.allowed);
    assert_eq!(decision.reason, i32::from(pb::AuthorizeReason::KeyExpired));
    assert!(app.authorize(&new.api_key, "event:read").await.allowed);

    // A short grace: allowed while it lasts, refused after, whatever the machine's speed.
    let key = app.key_for(None).await;
    let replaced = rotated(&app, &key.id, Some(Duration::from_millis(1500)))
        .await
        .replaced
        .unwrap();
    let end = tollgate::time::from_proto(replaced.expires_at.as_ref().unwrap()).unwrap();
    loop {
        let asked = tollgate::time::now();
        let decision = app.authorize(&key.api_key, "event:read").await;
        if decision.allowed {
            assert!(asked < end, "allowed after the grace ended");
        } else {
            assert_eq!(decision.reason, i32::from(pb::AuthorizeReason::KeyExpired));
            assert!(
                tollgate::time::now() >= end,
                "refused before the grace ended"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn rotation_is_refused_where_it_would_not_be_safe() {
    let app = TestIdentity::spawn().await;
    let key = app.key_for(None).await;
    let keys = || app.keys();

    let too_long = keys()
        .rotate_api_key(with_key(
            app.admin(),
            rotate(&key.id, Some(Duration::from_secs(31 * 86400))),
        ))
        .await
        .unwrap_err();
    assert_invalid(
        &too_long,
        "grace_period",
        "grace_period must be at most 30days (0 ends the old key at once)",
    );
    let negative = keys()
        .rotate_api_key(with_key(
            app.admin(),
            pb::RotateApiKeyRequest {
                id: key.id.clone(),
                grace_period: Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                }),
            },
        ))
        .await
        .unwrap_err();
    assert_invalid(
        &negative,
        "grace_period",
        "grace_period must be a duration of zero or more",
    );
    let missing = keys()
        .rotate_api_key(with_key(app.admin(), rotate("", None)))
        .await
        .unwrap_err();
    assert_invalid(&missing, "id", "id is required");

    // The default grace is a day.
    let replaced = rotated(&app, &key.id, None).await;
    let new_id = replaced.key.unwrap().id;
    let ends = secs(replaced.replaced.unwrap().expires_at.as_ref().unwrap());
    assert!((ends - chrono::Utc::now().timestamp() - 86400).abs() < 60);
    // Rotated once, the key names the one to rotate instead.
    let again = keys()
        .rotate_api_key(with_key(app.admin(), rotate(&key.id, None)))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(
        again.message(),
        format!(
            "API key {} was rotated already, by {new_id}: rotate {new_id} instead",
            key.id
        )
    );
    // ...which may itself be rotated, in the old key's grace.
    rotated(&app, &new_id, None).await;

    // An expired key is not brought back.
    let expired = app.insert_expired_key().await;
    let expired_id = app.authorize(&expired, "event:read").await;
    assert!(!expired_id.allowed);
    let listed = keys()
        .list_api_keys(with_key(
            app.admin(),
            pb::ListApiKeysRequest {
                page_size: 100,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let expired_key = listed
        .keys
        .iter()
        .find(|k| k.name == "written directly")
        .unwrap();
    let status = keys()
        .rotate_api_key(with_key(app.admin(), rotate(&expired_key.id, None)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        format!(
            "API key {} has expired: create a new key instead",
            expired_key.id
        )
    );

    // A service account cannot rotate, and a sandbox key does not reach production keys.
    let (_, ingest) = app.service_account_key(&["event_ingestor"]).await;
    let denied = keys()
        .rotate_api_key(with_key(&ingest, rotate(&key.id, None)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let sandbox = app.key_in(None, pb::Environment::Sandbox).await;
    let production = app.key_for(None).await;
    let unseen = keys()
        .rotate_api_key(with_key(&sandbox.api_key, rotate(&production.id, None)))
        .await
        .unwrap_err();
    assert_eq!(unseen.code(), Code::NotFound);
    // Another tenant's key is not found.
    let other = app.new_tenant("globex").await;
    let foreign = keys()
        .rotate_api_key(with_key(&other.admin_key, rotate(&production.id, None)))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::NotFound);
    assert!(
        app.authorize(&production.api_key, "event:read")
            .await
            .allowed
    );
    app.stop().await;
}

async fn audit_page(
    app: &TestIdentity,
    key: &str,
    request: pb::ListAuditEventsRequest,
) -> Result<pb::ListAuditEventsResponse, tonic::Status> {
    app.audit()
        .list_audit_events(with_key(key, request))
        .await
        .map(tonic::Response::into_inner)
}

/// Every record `key` may see matching `request`, following page tokens.
async fn audit_all(
    app: &TestIdentity,
    key: &str,
    mut request: pb::ListAuditEventsRequest,
) -> Vec<pb::AuditEvent> {
    let mut all = Vec::new();
    loop {
        let page = audit_page(app, key, request.clone()).await.unwrap();
        all.extend(page.events);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}

fn action_names(events: &[pb::AuditEvent]) -> Vec<pb::AuditAction> {
    events
        .iter()
        .rev()
        .map(|e| pb::AuditAction::try_from(e.action).unwrap())
        .collect()
}

#[tokio::test]
async fn the_audit_log_records_who_did_what_from_where() {
    let app = TestIdentity::spawn().await;
    let sa = app.service_account(&["event_ingestor"]).await;
    let key = app.key_for(Some(&sa)).await;
    let new = rotated(&app, &key.id, Some(Duration::ZERO))
        .await
        .key
        .unwrap();
    app.keys()
        .delete_api_key(with_key(
            app.admin(),
            pb::DeleteApiKeyRequest { id: new.id.clone() },
        ))
        .await
        .unwrap();

    let all = audit_all(
        &app,
        app.admin(),
        pb::ListAuditEventsRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    use pb::AuditAction as A;
    assert_eq!(
        action_names(&all),
        [
            A::TenantCreated,
            A::UserCreated,
            A::ApiKeyCreated,
            A::UserCreated,
            A::ApiKeyCreated,
            A::ApiKeyRotated,
            A::ApiKeyDeleted,
        ]
    );
    let bootstrap = all.last().unwrap();
    assert_eq!(bootstrap.actor_command, "test");
    assert_eq!(bootstrap.target_id, app.tenant.tenant_id);
    let rotation = &all[1];
    assert_eq!(rotation.target_id, key.id);
    assert_eq!(rotation.replacement_id, new.id);
    assert_eq!(rotation.roles_before, ["event_ingestor"]);
    assert_eq!(rotation.roles_after, ["event_ingestor"]);
    assert_eq!(rotation.actor_user_id, app.tenant.admin_id);
    assert!(rotation.actor_key_id.starts_with("sec_"));
    assert_eq!(rotation.actor_address, "127.0.0.1");
    assert_eq!(rotation.environment, i32::from(pb::Environment::Production));
    let text = format!("{all:?}");
    assert!(
        !text.contains(&key.api_key) && !text.contains(&new.api_key) && !text.contains(app.admin())
    );

    // Filters.
    let about_key = audit_all(
        &app,
        app.admin(),
        pb::ListAuditEventsRequest {
            target_id: key.id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        action_names(&about_key),
        [A::ApiKeyCreated, A::ApiKeyRotated]
    );
    let deletions = audit_all(
        &app,
        app.admin(),
        pb::ListAuditEventsRequest {
            action: A::ApiKeyDeleted.into(),
            actor_id: app.tenant.admin_id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(deletions.len(), 1);
    assert_eq!(deletions[0].target_id, new.id);
    let later = audit_all(
        &app,
        app.admin(),
        pb::ListAuditEventsRequest {
            start_time: Some(tollgate::time::to_proto(
                tollgate::time::now() + chrono::Duration::hours(1),
            )),
            ..Default::default()
        },
    )
    .await;
    assert!(later.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn the_audit_log_is_for_a_tenants_people_and_stays_in_the_tenant() {
    let app = TestIdentity::spawn().await;
    let other = app.new_tenant("globex").await;
    app.service_account(&["event_reader"]).await;

    // Another tenant's admin sees its own three bootstrap records, nothing of acme's.
    let theirs = audit_all(&app, &other.admin_key, Default::default()).await;
    assert_eq!(theirs.len(), 3);
    assert!(
        theirs
            .iter()
            .all(|e| e.target_id != app.tenant.tenant_id && e.actor_user_id != app.tenant.admin_id)
    );
    let filtered = audit_all(
        &app,
        &other.admin_key,
        pb::ListAuditEventsRequest {
            target_id: app.tenant.tenant_id.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(filtered.is_empty());

    // A service account's key may not read it.
    let (_, reader) = app.service_account_key(&["event_reader"]).await;
    let denied = audit_page(&app, &reader, Default::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // A sandbox key sees the sandbox's records only.
    let sandbox = app.key_in(None, pb::Environment::Sandbox).await;
    app.keys()
        .create_api_key(with_key(
            &sandbox.api_key,
            pb::CreateApiKeyRequest {
                name: "sandbox made".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let seen = audit_all(&app, &sandbox.api_key, Default::default()).await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|e| e.environment == i32::from(pb::Environment::Sandbox))
    );

    // Bad filters name their field.
    let bad_actor = audit_page(
        &app,
        app.admin(),
        pb::ListAuditEventsRequest {
            actor_id: "ten_nope".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid(
        &bad_actor,
        "actor_id",
        "actor_id must be an API key id (sec_...) or a user id (usr_...) (or unset)",
    );
    let bad_action = audit_page(
        &app,
        app.admin(),
        pb::ListAuditEventsRequest {
            action: 99,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid_field(&bad_action, "action");
    let bad_token = audit_page(
        &app,
        app.admin(),
        pb::ListAuditEventsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_invalid_field(&bad_token, "page_token");
    app.stop().await;
}

type Revocations = tonic::Streaming<pb::WatchRevocationsResponse>;

async fn watch(app: &TestIdentity, after_seq: i64) -> Revocations {
    app.authz()
        .watch_revocations(pb::WatchRevocationsRequest { after_seq })
        .await
        .unwrap()
        .into_inner()
}

async fn next(stream: &mut Revocations) -> pb::WatchRevocationsResponse {
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("no revocation within 30 s")
        .expect("stream ended")
        .expect("stream failed")
}

async fn delete_key(app: &TestIdentity, id: &str) {
    app.keys()
        .delete_api_key(with_key(
            app.admin(),
            pb::DeleteApiKeyRequest { id: id.into() },
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn revocations_are_streamed_and_resume_without_a_gap() {
    let app = TestIdentity::spawn().await;
    let mut stream = watch(&app, 0).await;
    let start = next(&mut stream).await;
    assert!(start.key_digest.is_empty() && !start.flush && start.seq > 0);

    // A key deleted, an account deleted with its keys, a key rotated to an expiry: each
    // digest is sent, in order, and issued keys are not.
    let deleted = app.key_for(None).await;
    delete_key(&app, &deleted.id).await;
    let first = next(&mut stream).await;
    assert_eq!(first.key_digest, digest(&deleted.api_key));
    assert!(first.seq > start.seq && !first.flush);

    let (sa, sa_key) = app.service_account_key(&["event_reader"]).await;
    app.users()
        .delete_user(with_key(app.admin(), pb::DeleteUserRequest { id: sa }))
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await.key_digest, digest(&sa_key));

    let rotated_key = app.key_for(None).await;
    rotated(&app, &rotated_key.id, Some(Duration::ZERO)).await;
    let changed = next(&mut stream).await;
    assert_eq!(changed.key_digest, digest(&rotated_key.api_key));
    drop(stream);

    // Revocations made while nobody listened are sent on resuming after the last seq seen.
    let missed = app.key_for(None).await;
    delete_key(&app, &missed.id).await;
    let mut resumed = watch(&app, changed.seq).await;
    let replayed = next(&mut resumed).await;
    assert_eq!(replayed.key_digest, digest(&missed.api_key));
    assert!(!replayed.flush);

    // A position the log does not continue from (another database, or pruned past it) says
    // to flush everything.
    let mut lost = watch(&app, replayed.seq + 1_000_000).await;
    let flush = next(&mut lost).await;
    assert!(flush.flush && flush.key_digest.is_empty());
    assert_eq!(flush.seq, replayed.seq);
    app.stop().await;
}

#[tokio::test]
async fn the_revocation_stream_outlives_the_request_timeout() {
    let app =
        TestIdentity::spawn_with(|s| s.limits.request_timeout = Duration::from_millis(300)).await;
    let mut stream = watch(&app, 0).await;
    next(&mut stream).await;
    // Well past the timeout that bounds unary calls, the stream still carries revocations.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let key = app.key_for(None).await;
    delete_key(&app, &key.id).await;
    assert_eq!(next(&mut stream).await.key_digest, digest(&key.api_key));
    app.stop().await;
}

#[tokio::test]
async fn the_revocation_stream_needs_the_internal_credential_and_ends_on_shutdown() {
    let app = TestIdentity::spawn_with(|s| {
        s.internal_token = Some("Xq7vP2mK9sT4wB8nR3yL6cF1hJ5dG0zA".parse().unwrap());
        // Far longer than the stop below may take.
        s.shutdown_grace = Duration::from_secs(120);
    })
    .await;
    let refused = app
        .authz()
        .watch_revocations(pb::WatchRevocationsRequest { after_seq: 0 })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let mut request = tonic::Request::new(pb::WatchRevocationsRequest { after_seq: -1 });
    request.metadata_mut().insert(
        "x-tollgate-internal-token",
        "Xq7vP2mK9sT4wB8nR3yL6cF1hJ5dG0zA".parse().unwrap(),
    );
    let negative = app.authz().watch_revocations(request).await.unwrap_err();
    assert_invalid_field(&negative, "after_seq");

    let mut request = tonic::Request::new(pb::WatchRevocationsRequest { after_seq: 0 });
    request.metadata_mut().insert(
        "x-tollgate-internal-token",
        "Xq7vP2mK9sT4wB8nR3yL6cF1hJ5dG0zA".parse().unwrap(),
    );
    let mut stream = app
        .authz()
        .watch_revocations(request)
        .await
        .unwrap()
        .into_inner();
    next(&mut stream).await;
    // An open stream does not hold the drain up for its grace period: the stream ends and the
    // server stops.
    tokio::time::timeout(Duration::from_secs(20), app.stop())
        .await
        .expect("the server did not stop with a revocation stream open");
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.next()).await,
        Ok(None | Some(Err(_)))
    ));
}
