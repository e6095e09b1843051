//! API keys: roles copied at creation and kept, validation of CreateApiKey, secrets shown once.

use crate::*;

#[tokio::test]
async fn a_key_copies_its_service_accounts_roles() {
    let app = TestIdentity::spawn().await;
    let sa = app.service_account(&["event_ingestor"]).await;
    let got = app
        .users()
        .get_user(with_key(app.admin(), pb::GetUserRequest { id: sa.clone() }))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(got.r#type, i32::from(pb::UserType::ServiceAccount));
    assert_eq!(got.roles, ["event_ingestor"]);

    let key = app.key_for(Some(&sa)).await;
    assert_eq!(key.roles, ["event_ingestor"]);
    assert_eq!(key.user_id, sa);
    assert!(key.api_key.starts_with("sk_live_"));
    assert!(key.id.starts_with("sec_") && key.created_at.is_some());

    let write = app.authorize(&key.api_key, "event:write").await;
    assert!(write.allowed);
    assert_eq!(write.reason, i32::from(pb::AuthorizeReason::Allowed));
    let principal = write.principal.unwrap();
    assert_eq!(principal.tenant_id, app.tenant.tenant_id);
    assert_eq!(principal.user_id, sa);
    assert_eq!(principal.key_id, key.id);
    assert_eq!(principal.user_type, i32::from(pb::UserType::ServiceAccount));
    assert_eq!(
        principal.environment,
        i32::from(pb::Environment::Production)
    );
    assert_eq!(principal.roles, ["event_ingestor"]);
    assert_eq!(principal.permissions, ["event:write"]);

    let read = app.authorize(&key.api_key, "event:read").await;
    assert!(!read.allowed);
    assert_eq!(
        read.reason,
        i32::from(pb::AuthorizeReason::PermissionMissing)
    );
    assert!(read.principal.is_some());
    app.stop().await;
}

#[tokio::test]
async fn updating_roles_leaves_existing_keys_unchanged() {
    let app = TestIdentity::spawn().await;
    let sa = app.service_account(&["event_ingestor"]).await;
    let old = app.key_for(Some(&sa)).await;

    let updated = app
        .users()
        .update_user_roles(with_key(
            app.admin(),
            pb::UpdateUserRolesRequest {
                id: sa.clone(),
                roles: vec!["event_reader".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(updated.roles, ["event_reader"]);

    // The old key keeps what it copied.
    assert!(app.authorize(&old.api_key, "event:write").await.allowed);
    assert!(!app.authorize(&old.api_key, "event:read").await.allowed);
    let stored = app
        .keys()
        .get_api_key(with_key(
            app.admin(),
            pb::GetApiKeyRequest { id: old.id.clone() },
        ))
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    assert_eq!(stored.roles, ["event_ingestor"]);

    // A new key gets the new roles.
    let new = app.key_for(Some(&sa)).await;
    assert_eq!(new.roles, ["event_reader"]);
    assert!(app.authorize(&new.api_key, "event:read").await.allowed);
    assert!(!app.authorize(&new.api_key, "event:write").await.allowed);

    // Roles validation applies to updates too; a person's account has no roles to update.
    let err = app
        .users()
        .update_user_roles(with_key(
            app.admin(),
            pb::UpdateUserRolesRequest {
                id: sa.clone(),
                roles: vec![],
            },
        ))
        .await
        .unwrap_err();
    assert_invalid(
        &err,
        "roles",
        "Service accounts must have at least one role assigned",
    );
    let err = app
        .users()
        .update_user_roles(with_key(
            app.admin(),
            pb::UpdateUserRolesRequest {
                id: app.tenant.admin_id.clone(),
                roles: vec!["event_reader".into()],
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    app.stop().await;
}

#[tokio::test]
async fn get_and_list_never_return_a_secret() {
    let app = TestIdentity::spawn().await;
    let sa = app.service_account(&["event_ingestor"]).await;
    let created = app.key_for(Some(&sa)).await;
    // Use the admin key so that last_used_at is maintained, and check it is.
    let got = app
        .keys()
        .get_api_key(with_key(
            app.admin(),
            pb::GetApiKeyRequest {
                id: created.id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let listed = app
        .keys()
        .list_api_keys(with_key(app.admin(), pb::ListApiKeysRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let printed = format!("{got:?} {listed:?}");
    for secret in [created.api_key.as_str(), app.admin()] {
        assert!(!printed.contains(secret));
        assert!(!printed.contains(&secret[8..30]));
    }
    let key = got.key.unwrap();
    assert_eq!(key.display_hint, created.display_hint);
    assert_eq!(
        key.display_hint,
        format!(
            "sk_live_...{}",
            &created.api_key[created.api_key.len() - 4..]
        )
    );
    let admin_key = listed
        .keys
        .iter()
        .find(|k| k.user_id == app.tenant.admin_id)
        .unwrap();
    assert!(
        admin_key.last_used_at.is_some(),
        "the admin key was used: {admin_key:?}"
    );
    let sa_key = listed.keys.iter().find(|k| k.id == created.id).unwrap();
    assert!(sa_key.last_used_at.is_none(), "the new key was never used");
    app.stop().await;
}

#[tokio::test]
async fn create_api_key_validates_its_fields() {
    let app = TestIdentity::spawn().await;
    let sa = app.service_account(&["event_reader"]).await;
    let mut keys = app.keys();
    let past = prost_types::Timestamp {
        seconds: 1_000_000_000,
        nanos: 0,
    };
    let cases = [
        (
            pb::CreateApiKeyRequest {
                name: "  ".into(),
                ..Default::default()
            },
            "name",
        ),
        (
            pb::CreateApiKeyRequest {
                name: "k".into(),
                expires_at: Some(past),
                ..Default::default()
            },
            "expires_at",
        ),
        (
            pb::CreateApiKeyRequest {
                name: "k".into(),
                service_account_id: app.tenant.admin_id.clone(),
                ..Default::default()
            },
            "service_account_id",
        ),
        (
            pb::CreateApiKeyRequest {
                name: "k".into(),
                service_account_id: "usr_nope".into(),
                ..Default::default()
            },
            "service_account_id",
        ),
        (
            pb::CreateApiKeyRequest {
                name: "k".into(),
                environment: 9,
                ..Default::default()
            },
            "environment",
        ),
    ];
    for (request, field) in cases {
        let err = keys
            .create_api_key(with_key(app.admin(), request))
            .await
            .unwrap_err();
        assert_invalid_field(&err, field);
    }

    let future = prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() + 3600,
        nanos: 0,
    };
    let sandbox = keys
        .create_api_key(with_key(
            app.admin(),
            pb::CreateApiKeyRequest {
                name: "staging-analytics".into(),
                service_account_id: sa.clone(),
                expires_at: Some(future),
                environment: pb::Environment::Sandbox.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(sandbox.api_key.starts_with("sk_test_"));
    assert_eq!(sandbox.expires_at, Some(future));
    let decision = app.authorize(&sandbox.api_key, "event:read").await;
    assert!(decision.allowed);
    assert_eq!(decision.expires_at, Some(future));
    assert_eq!(
        decision.principal.unwrap().environment,
        i32::from(pb::Environment::Sandbox)
    );
    app.stop().await;
}
