//! The seed stories, told through identity-service's gRPC API on 127.0.0.1:0.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{TestApp, digest, with_key};
use tollgate::proto::identity::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

fn service_account_request(roles: &[&str]) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        r#type: pb::UserType::ServiceAccount.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        name: String::new(),
    }
}

/// Asserts INVALID_ARGUMENT with `message`, and BadRequest details naming `field`.
fn assert_invalid(status: &tonic::Status, field: &str, message: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), message);
    let bad_request = status
        .get_details_bad_request()
        .expect("BadRequest details");
    assert_eq!(bad_request.field_violations[0].field, field);
    assert_eq!(bad_request.field_violations[0].description, message);
}

fn assert_invalid_field(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(field), "{status:?}");
    let bad_request = status
        .get_details_bad_request()
        .expect("BadRequest details");
    assert_eq!(bad_request.field_violations[0].field, field);
}

#[tokio::test]
async fn service_account_validation_uses_the_documented_texts() {
    let app = TestApp::spawn().await;
    let mut users = app.users();

    for roles in [&[][..], &[""][..]] {
        let err = users
            .create_user(with_key(app.admin(), service_account_request(roles)))
            .await
            .unwrap_err();
        if roles.is_empty() {
            assert_invalid(
                &err,
                "roles",
                "Service accounts must have at least one role assigned",
            );
        } else {
            assert_invalid(&err, "roles", "Invalid role: ");
        }
    }
    let err = users
        .create_user(with_key(
            app.admin(),
            service_account_request(&["custom_role"]),
        ))
        .await
        .unwrap_err();
    assert_invalid(&err, "roles", "Invalid role: custom_role");

    let err = users
        .create_user(with_key(app.admin(), pb::CreateUserRequest::default()))
        .await
        .unwrap_err();
    assert_invalid_field(&err, "type");
    assert!(
        err.message().contains("USER_TYPE_USER")
            && err.message().contains("USER_TYPE_SERVICE_ACCOUNT")
    );

    let person_with_roles = pb::CreateUserRequest {
        r#type: pb::UserType::User.into(),
        roles: vec!["event_reader".into()],
        name: String::new(),
    };
    let err = users
        .create_user(with_key(app.admin(), person_with_roles))
        .await
        .unwrap_err();
    assert_invalid_field(&err, "roles");
    assert!(err.message().contains("service accounts"), "{err:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_key_copies_its_service_accounts_roles() {
    let app = TestApp::spawn().await;
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
    let app = TestApp::spawn().await;
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
async fn both_roles_and_user_keys_grant_what_they_say() {
    let app = TestApp::spawn().await;
    let sa = app
        .service_account(&["event_ingestor", "event_reader"])
        .await;
    let both = app.key_for(Some(&sa)).await;
    assert!(app.authorize(&both.api_key, "event:write").await.allowed);
    assert!(app.authorize(&both.api_key, "event:read").await.allowed);
    assert!(!app.authorize(&both.api_key, "users:manage").await.allowed);

    for permission in [
        "event:write",
        "event:read",
        "users:manage",
        "api_keys:manage",
    ] {
        let decision = app.authorize(app.admin(), permission).await;
        assert!(decision.allowed, "{permission}");
        assert_eq!(
            decision.principal.unwrap().user_type,
            i32::from(pb::UserType::User)
        );
    }
    let own = app.key_for(None).await;
    assert!(own.roles.is_empty());
    assert!(app.authorize(&own.api_key, "event:read").await.allowed);

    let roles = app
        .roles()
        .list_roles(with_key(app.admin(), pb::ListRolesRequest {}))
        .await
        .unwrap()
        .into_inner();
    let table: Vec<(String, Vec<String>)> = roles
        .roles
        .into_iter()
        .map(|r| (r.name, r.permissions))
        .collect();
    assert_eq!(
        table,
        [
            ("event_ingestor".to_owned(), vec!["event:write".to_owned()]),
            ("event_reader".to_owned(), vec!["event:read".to_owned()]),
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn service_account_keys_cannot_manage_anything() {
    let app = TestApp::spawn().await;
    let sa = app
        .service_account(&["event_ingestor", "event_reader"])
        .await;
    let key = app.key_for(Some(&sa)).await.api_key;

    let denied = [
        app.users()
            .create_user(with_key(&key, service_account_request(&["event_reader"])))
            .await
            .map(|_| ()),
        app.users()
            .list_users(with_key(&key, pb::ListUsersRequest::default()))
            .await
            .map(|_| ()),
        app.users()
            .get_user(with_key(&key, pb::GetUserRequest { id: sa.clone() }))
            .await
            .map(|_| ()),
        app.users()
            .delete_user(with_key(&key, pb::DeleteUserRequest { id: sa.clone() }))
            .await
            .map(|_| ()),
        app.keys()
            .create_api_key(with_key(
                &key,
                pb::CreateApiKeyRequest {
                    name: "x".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ()),
        app.keys()
            .list_api_keys(with_key(&key, pb::ListApiKeysRequest::default()))
            .await
            .map(|_| ()),
        app.roles()
            .list_roles(with_key(&key, pb::ListRolesRequest {}))
            .await
            .map(|_| ()),
    ];
    for result in denied {
        let err = result.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains("service-account keys"), "{err:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn authorize_refuses_dead_and_malformed_keys() {
    let app = TestApp::spawn().await;
    let sa = app.service_account(&["event_ingestor"]).await;

    // A deleted key, whose record the key cache held: the delete empties it at once.
    let deleted = app.key_for(Some(&sa)).await;
    assert!(app.authorize(&deleted.api_key, "event:write").await.allowed);
    app.keys()
        .delete_api_key(with_key(
            app.admin(),
            pb::DeleteApiKeyRequest {
                id: deleted.id.clone(),
            },
        ))
        .await
        .unwrap();
    let decision = app.authorize(&deleted.api_key, "event:write").await;
    assert!(!decision.allowed);
    assert_eq!(decision.reason, i32::from(pb::AuthorizeReason::KeyNotFound));
    assert!(decision.principal.is_none());

    // A key whose service account was deleted.
    let orphan = app.key_for(Some(&sa)).await;
    assert!(app.authorize(&orphan.api_key, "event:write").await.allowed);
    let revoked = app
        .users()
        .delete_user(with_key(
            app.admin(),
            pb::DeleteUserRequest { id: sa.clone() },
        ))
        .await
        .unwrap()
        .into_inner()
        .revoked_api_keys;
    assert_eq!(revoked, 1);
    let decision = app.authorize(&orphan.api_key, "event:write").await;
    assert_eq!(decision.reason, i32::from(pb::AuthorizeReason::KeyNotFound));

    // An expired key (written straight to the store: the API only accepts future expiries).
    let expired = insert_expired_key(&app).await;
    let decision = app.authorize(&expired, "event:read").await;
    assert!(!decision.allowed);
    assert_eq!(decision.reason, i32::from(pb::AuthorizeReason::KeyExpired));
    assert!(decision.expires_at.is_some());
    let err = app
        .users()
        .list_users(with_key(&expired, pb::ListUsersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{err:?}");

    // A deleted key on a management call; a malformed key; no key at all.
    let err = app
        .users()
        .list_users(with_key(&deleted.api_key, pb::ListUsersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("invalid"), "{err:?}");
    let mut mangled = deleted.api_key.clone();
    mangled.replace_range(10..11, if &mangled[10..11] == "a" { "b" } else { "a" });
    let err = app
        .users()
        .list_users(with_key(&mangled, pb::ListUsersRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("malformed"), "{err:?}");
    assert!(!err.message().contains(&mangled));
    let err = app
        .users()
        .list_users(pb::ListUsersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("missing"), "{err:?}");

    // Authorize's own input checks.
    let err = app
        .authz()
        .authorize(pb::AuthorizeRequest {
            key_digest: vec![0; 31],
            permission: "event:read".into(),
        })
        .await
        .unwrap_err();
    assert_invalid_field(&err, "key_digest");
    let err = app
        .authz()
        .authorize(pb::AuthorizeRequest {
            key_digest: digest(app.admin()),
            permission: "event:delete".into(),
        })
        .await
        .unwrap_err();
    assert_invalid_field(&err, "permission");
    app.stop().await;
}

async fn insert_expired_key(app: &TestApp) -> String {
    use identity_service::model::api_keys::{ApiKey, KeyName};
    use identity_service::store::IdentityStore;
    use tollgate::ids::{TenantId, UserId};
    let store = identity_service::store::sql::SqlStore::connect(&app.database_url)
        .await
        .unwrap();
    let owner = store
        .get_user(
            &TenantId::parse(&app.tenant.tenant_id).unwrap(),
            &UserId::parse(&app.tenant.admin_id).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    let now = tollgate::time::now();
    let (key, secret) = ApiKey::issue(
        &owner,
        tollgate::keys::Environment::Production,
        KeyName::parse("expired").unwrap(),
        Some(now - chrono::Duration::seconds(1)),
        now - chrono::Duration::hours(1),
    )
    .unwrap();
    store.insert_api_key(&key).await.unwrap();
    secret.expose().to_owned()
}

#[tokio::test]
async fn another_tenants_ids_are_not_found() {
    let app = TestApp::spawn().await;
    let sa = app.service_account(&["event_reader"]).await;
    let key = app.key_for(Some(&sa)).await;
    let other = app.new_tenant("globex").await;
    let theirs = other.admin_key.as_str();

    let results = [
        app.users()
            .get_user(with_key(theirs, pb::GetUserRequest { id: sa.clone() }))
            .await
            .map(|_| ()),
        app.users()
            .update_user_roles(with_key(
                theirs,
                pb::UpdateUserRolesRequest {
                    id: sa.clone(),
                    roles: vec!["event_ingestor".into()],
                },
            ))
            .await
            .map(|_| ()),
        app.users()
            .delete_user(with_key(theirs, pb::DeleteUserRequest { id: sa.clone() }))
            .await
            .map(|_| ()),
        app.keys()
            .get_api_key(with_key(
                theirs,
                pb::GetApiKeyRequest { id: key.id.clone() },
            ))
            .await
            .map(|_| ()),
        app.keys()
            .delete_api_key(with_key(
                theirs,
                pb::DeleteApiKeyRequest { id: key.id.clone() },
            ))
            .await
            .map(|_| ()),
        app.keys()
            .create_api_key(with_key(
                theirs,
                pb::CreateApiKeyRequest {
                    name: "x".into(),
                    service_account_id: sa.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(|_| ()),
    ];
    for result in results {
        let err = result.unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    let listed = app
        .users()
        .list_users(with_key(theirs, pb::ListUsersRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.users.len(), 1);
    assert_eq!(listed.users[0].id, other.admin_id);
    let keys = app
        .keys()
        .list_api_keys(with_key(
            theirs,
            pb::ListApiKeysRequest {
                user_id: sa.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(keys.keys.is_empty());
    // Nothing of the first tenant was touched.
    assert!(app.authorize(&key.api_key, "event:read").await.allowed);
    app.stop().await;
}

#[tokio::test]
async fn get_and_list_never_return_a_secret() {
    let app = TestApp::spawn().await;
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
    let app = TestApp::spawn().await;
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

#[tokio::test]
async fn the_last_user_account_cannot_be_deleted() {
    let app = TestApp::spawn().await;
    let err = app
        .users()
        .delete_user(with_key(
            app.admin(),
            pb::DeleteUserRequest {
                id: app.tenant.admin_id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let second = app
        .users()
        .create_user(with_key(
            app.admin(),
            pb::CreateUserRequest {
                r#type: pb::UserType::User.into(),
                roles: vec![],
                name: "Ada".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert!(second.roles.is_empty());
    app.users()
        .delete_user(with_key(
            app.admin(),
            pb::DeleteUserRequest {
                id: second.id.clone(),
            },
        ))
        .await
        .unwrap();
    let err = app
        .users()
        .get_user(with_key(app.admin(), pb::GetUserRequest { id: second.id }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn list_users_pages_through_every_account_once() {
    let app = TestApp::spawn().await;
    let mut expected = vec![app.tenant.admin_id.clone()];
    for _ in 0..7 {
        expected.push(app.service_account(&["event_reader"]).await);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = app
            .users()
            .list_users(with_key(
                app.admin(),
                pb::ListUsersRequest {
                    page_size: 3,
                    page_token: token.clone(),
                    r#type: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen.extend(page.users.into_iter().map(|u| u.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);

    let service_accounts = app
        .users()
        .list_users(with_key(
            app.admin(),
            pb::ListUsersRequest {
                r#type: pb::UserType::ServiceAccount.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(service_accounts.users.len(), 7);

    for bad in [
        pb::ListUsersRequest {
            page_size: 1001,
            ..Default::default()
        },
        pb::ListUsersRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        },
    ] {
        let err = app
            .users()
            .list_users(with_key(app.admin(), bad))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    app.stop().await;
}

#[tokio::test]
async fn authorize_requires_the_internal_credential_when_configured() {
    let app = TestApp::spawn_with(|s| {
        s.internal_token = Some("an-internal-token-of-length".parse().unwrap());
    })
    .await;
    let request = || pb::AuthorizeRequest {
        key_digest: digest(app.admin()),
        permission: "event:read".into(),
    };
    let err = app.authz().authorize(request()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut wrong = tonic::Request::new(request());
    wrong.metadata_mut().insert(
        "x-tollgate-internal-token",
        "wrong-token-xxxxxxxxxx".parse().unwrap(),
    );
    assert_eq!(
        app.authz().authorize(wrong).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut right = tonic::Request::new(request());
    right.metadata_mut().insert(
        "x-tollgate-internal-token",
        "an-internal-token-of-length".parse().unwrap(),
    );
    assert!(
        app.authz()
            .authorize(right)
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
    app.stop().await;
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let app = TestApp::spawn().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    for service in ["", "tollgate.identity.v1.AuthorizationService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            i32::from(tonic_health::pb::health_check_response::ServingStatus::Serving)
        );
    }

    use tonic_reflection::pb::{v1, v1alpha};
    let mut reflection =
        v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "tollgate.identity.v1.UserService",
        "tollgate.identity.v1.AuthorizationService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    // Older clients (grpcio) speak only v1alpha.
    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "tollgate.identity.v1.ApiKeyService".into(),
            ),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap().message_response;
    assert!(
        matches!(response, Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()),
        "{response:?}"
    );
    app.stop().await;
}
