//! The store test suite, run against SQLite always and PostgreSQL when TEST_DATABASE_URL is set.
//! Every query of the store is exercised here, because runtime queries are not checked at
//! compile time.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;

use chrono::Duration;
use identity_service::model::api_keys::{ApiKey, KeyName};
use identity_service::model::roles::RoleSet;
use identity_service::model::tenants::Tenant;
use identity_service::model::users::{AccountKind, DisplayName, User, UserType};
use identity_service::store::sql::SqlStore;
use identity_service::store::{DeleteUserOutcome, IdentityStore, KeyRecord, StoreError};
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::Environment;
use tollgate::time::now;

async fn connect(
    url: &tollgate::database::DatabaseUrl,
) -> Result<Arc<dyn IdentityStore>, StoreError> {
    Ok(Arc::new(SqlStore::connect(url).await?))
}

/// A tenant with its first (person) account and that account's key, stored.
async fn tenant(store: &Arc<dyn IdentityStore>) -> (Tenant, User, ApiKey) {
    let t = Tenant {
        id: TenantId::generate(),
        name: "acme".into(),
        created_at: now(),
    };
    let user = User::new(
        t.id.clone(),
        AccountKind::Person,
        DisplayName::parse("name", "admin").unwrap(),
        now(),
    );
    let key = issue(&user, None);
    store.create_tenant(&t, &user, &key).await.unwrap();
    (t, user, key)
}

fn roles(names: &[&str]) -> RoleSet {
    RoleSet::for_service_account(names).unwrap()
}

fn service_account(tenant: &Tenant, names: &[&str]) -> User {
    User::new(
        tenant.id.clone(),
        AccountKind::ServiceAccount(roles(names)),
        DisplayName::default(),
        now(),
    )
}

fn issue(owner: &User, expires_in: Option<Duration>) -> ApiKey {
    let now = now();
    ApiKey::issue(
        owner,
        Environment::Production,
        KeyName::parse("test key").unwrap(),
        expires_in.map(|d| now + d),
        now,
    )
    .unwrap()
    .0
}

async fn users_round_trip(store: Arc<dyn IdentityStore>) {
    let (t, admin, _) = tenant(&store).await;
    let (other, _, _) = tenant(&store).await;
    let sa = service_account(&t, &["event_ingestor"]);
    store.insert_user(&sa).await.unwrap();

    assert_eq!(
        store.get_user(&t.id, &sa.id).await.unwrap(),
        Some(sa.clone())
    );
    assert_eq!(store.get_user(&other.id, &sa.id).await.unwrap(), None);
    assert_eq!(
        store.get_user(&t.id, &UserId::generate()).await.unwrap(),
        None
    );

    let all = store.list_users(&t.id, None, None, 10).await.unwrap();
    assert_eq!(all, vec![admin.clone(), sa.clone()]);
    let sas = store
        .list_users(&t.id, Some(UserType::ServiceAccount), None, 10)
        .await
        .unwrap();
    assert_eq!(sas, vec![sa.clone()]);
    let after_admin = store
        .list_users(&t.id, None, Some(&admin.id), 10)
        .await
        .unwrap();
    assert_eq!(after_admin, vec![sa.clone()]);
    assert_eq!(
        store.list_users(&t.id, None, None, 1).await.unwrap(),
        vec![admin.clone()]
    );

    let later = now() + Duration::seconds(5);
    let updated = store
        .update_user_roles(&t.id, &sa.id, &roles(&["event_reader"]), later)
        .await
        .unwrap()
        .expect("service account updated");
    assert_eq!(updated.roles, roles(&["event_reader"]));
    assert_eq!(updated.updated_at, later);
    assert_eq!(updated.created_at, sa.created_at);
    // A person's account has no roles to update, and another tenant's account is not there.
    let person = store
        .update_user_roles(&t.id, &admin.id, &roles(&["event_reader"]), later)
        .await
        .unwrap();
    assert_eq!(person, None);
    let foreign = store
        .update_user_roles(&other.id, &sa.id, &roles(&["event_reader"]), later)
        .await
        .unwrap();
    assert_eq!(foreign, None);
}

async fn keys_round_trip(store: Arc<dyn IdentityStore>) {
    let (t, admin, admin_key) = tenant(&store).await;
    let (other, _, _) = tenant(&store).await;
    let sa = service_account(&t, &["event_ingestor", "event_reader"]);
    store.insert_user(&sa).await.unwrap();
    let sa_key = issue(&sa, Some(Duration::hours(1)));
    store.insert_api_key(&sa_key).await.unwrap();

    assert_eq!(
        store.get_api_key(&t.id, &sa_key.id).await.unwrap(),
        Some(sa_key.clone())
    );
    assert_eq!(
        store.get_api_key(&other.id, &sa_key.id).await.unwrap(),
        None
    );
    assert_eq!(
        store.find_api_key_by_digest(&sa_key.digest).await.unwrap(),
        Some(Arc::new(KeyRecord::new(sa_key.clone())))
    );
    let all = store
        .list_api_keys(&t.id, None, None, None, 10)
        .await
        .unwrap();
    assert_eq!(all, vec![admin_key.clone(), sa_key.clone()]);
    let of_admin = store
        .list_api_keys(&t.id, Some(&admin.id), None, None, 10)
        .await
        .unwrap();
    assert_eq!(of_admin, vec![admin_key.clone()]);
    let after = store
        .list_api_keys(&t.id, None, None, Some(&admin_key.id), 10)
        .await
        .unwrap();
    assert_eq!(after, vec![sa_key.clone()]);

    // last_used_at moves only when the stored value is older than `stale_before`.
    let t1 = now();
    store
        .touch_api_key(&sa_key.id, t1, t1 - Duration::seconds(60))
        .await
        .unwrap();
    let t2 = t1 + Duration::seconds(30);
    store
        .touch_api_key(&sa_key.id, t2, t2 - Duration::seconds(60))
        .await
        .unwrap();
    let stored = store.get_api_key(&t.id, &sa_key.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(t1));
    let t3 = t1 + Duration::seconds(61);
    store
        .touch_api_key(&sa_key.id, t3, t3 - Duration::seconds(60))
        .await
        .unwrap();
    let stored = store.get_api_key(&t.id, &sa_key.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(t3));

    assert!(!store.delete_api_key(&other.id, &sa_key.id).await.unwrap());
    assert!(store.delete_api_key(&t.id, &sa_key.id).await.unwrap());
    assert!(!store.delete_api_key(&t.id, &sa_key.id).await.unwrap());
    assert_eq!(
        store.find_api_key_by_digest(&sa_key.digest).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .get_api_key(&t.id, &ApiKeyId::generate())
            .await
            .unwrap(),
        None
    );
}

async fn delete_user_revokes_keys_and_keeps_one_person(store: Arc<dyn IdentityStore>) {
    let (t, admin, admin_key) = tenant(&store).await;
    let (other, _, _) = tenant(&store).await;
    let sa = service_account(&t, &["event_ingestor"]);
    store.insert_user(&sa).await.unwrap();
    let keys = [issue(&sa, None), issue(&sa, None)];
    for key in &keys {
        store.insert_api_key(key).await.unwrap();
    }

    assert_eq!(
        store.delete_user(&other.id, &sa.id).await.unwrap(),
        DeleteUserOutcome::NotFound
    );
    assert_eq!(
        store.delete_user(&t.id, &sa.id).await.unwrap(),
        DeleteUserOutcome::Deleted {
            revoked_api_keys: 2
        }
    );
    for key in &keys {
        assert_eq!(
            store.find_api_key_by_digest(&key.digest).await.unwrap(),
            None
        );
    }
    assert_eq!(
        store.delete_user(&t.id, &sa.id).await.unwrap(),
        DeleteUserOutcome::NotFound
    );

    // The last person's account stays, and so does its key.
    assert_eq!(
        store.delete_user(&t.id, &admin.id).await.unwrap(),
        DeleteUserOutcome::LastUser
    );
    assert!(
        store
            .find_api_key_by_digest(&admin_key.digest)
            .await
            .unwrap()
            .is_some()
    );
    let second = User::new(
        t.id.clone(),
        AccountKind::Person,
        DisplayName::default(),
        now(),
    );
    store.insert_user(&second).await.unwrap();
    assert_eq!(
        store.delete_user(&t.id, &admin.id).await.unwrap(),
        DeleteUserOutcome::Deleted {
            revoked_api_keys: 1
        }
    );
    assert_eq!(
        store.delete_user(&t.id, &second.id).await.unwrap(),
        DeleteUserOutcome::LastUser
    );
}

async fn concurrent_deletes_leave_one_person(store: Arc<dyn IdentityStore>) {
    let (t, first, _) = tenant(&store).await;
    let mut people = vec![first];
    for _ in 0..3 {
        let u = User::new(
            t.id.clone(),
            AccountKind::Person,
            DisplayName::default(),
            now(),
        );
        store.insert_user(&u).await.unwrap();
        people.push(u);
    }
    let deletes = people.iter().map(|u| {
        let store = store.clone();
        let (tenant, id) = (t.id.clone(), u.id.clone());
        tokio::spawn(async move { store.delete_user(&tenant, &id).await })
    });
    let mut deleted = 0;
    for handle in deletes.collect::<Vec<_>>() {
        if let DeleteUserOutcome::Deleted { .. } = handle.await.unwrap().unwrap() {
            deleted += 1;
        }
    }
    assert_eq!(deleted, 3);
    let left = store
        .list_users(&t.id, Some(UserType::User), None, 10)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
}

async fn constraints_are_classified(store: Arc<dyn IdentityStore>) {
    let (t, admin, admin_key) = tenant(&store).await;
    // The same digest twice is a unique violation.
    let mut dup = issue(&admin, None);
    dup.digest = admin_key.digest;
    assert!(matches!(
        store.insert_api_key(&dup).await,
        Err(StoreError::UniqueViolation(_))
    ));
    // A key whose owner does not exist is a foreign-key violation.
    let ghost = service_account(&t, &["event_reader"]);
    assert!(matches!(
        store.insert_api_key(&issue(&ghost, None)).await,
        Err(StoreError::ForeignKeyViolation)
    ));
    // Tenants are found by name (the oldest of that name).
    assert_eq!(
        store
            .find_tenant_by_name("acme")
            .await
            .unwrap()
            .map(|found| found.name),
        Some("acme".to_owned())
    );
    assert_eq!(store.find_tenant_by_name("nobody").await.unwrap(), None);
    // A failed bootstrap leaves nothing behind.
    let t2 = Tenant {
        id: TenantId::generate(),
        name: "t2".into(),
        created_at: now(),
    };
    let u2 = User::new(
        t2.id.clone(),
        AccountKind::Person,
        DisplayName::default(),
        now(),
    );
    let mut k2 = issue(&u2, None);
    k2.digest = admin_key.digest;
    assert!(store.create_tenant(&t2, &u2, &k2).await.is_err());
    assert_eq!(store.get_user(&t2.id, &u2.id).await.unwrap(), None);
    assert!(store.reachable().await);
}

tollgate::store_suite!(
    crate::connect;
    users_round_trip,
    keys_round_trip,
    delete_user_revokes_keys_and_keeps_one_person,
    concurrent_deletes_leave_one_person,
    constraints_are_classified,
);
