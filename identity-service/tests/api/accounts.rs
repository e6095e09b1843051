//! Accounts: the documented validation texts, the last user account, paging, and another
//! tenant's ids.

use crate::*;

#[tokio::test]
async fn service_account_validation_uses_the_documented_texts() {
    let app = TestIdentity::spawn().await;
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
async fn the_last_user_account_cannot_be_deleted() {
    let app = TestIdentity::spawn().await;
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
    let app = TestIdentity::spawn().await;
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
async fn another_tenants_ids_are_not_found() {
    let app = TestIdentity::spawn().await;
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
