//! What keys may do: roles and person keys, service-account keys on management RPCs, Authorize's
//! decisions for dead and malformed keys, and its internal credential.

use crate::*;

#[tokio::test]
async fn both_roles_and_user_keys_grant_what_they_say() {
    let app = TestIdentity::spawn().await;
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
        "meters:manage",
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
    let app = TestIdentity::spawn().await;
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
    let app = TestIdentity::spawn().await;
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
    let expired = app.insert_expired_key().await;
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

#[tokio::test]
async fn authorize_requires_the_internal_credential_when_configured() {
    let app = TestIdentity::spawn_with(|s| {
        s.internal_token = Some("Xq7vP2mK9sT4wB8nR3yL6cF1hJ5dG0zA".parse().unwrap());
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
        "Xq7vP2mK9sT4wB8nR3yL6cF1hJ5dG0zA".parse().unwrap(),
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
