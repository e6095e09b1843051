//! The store test suite, run against SQLite always and PostgreSQL when TEST_DATABASE_URL is set.
//! Every query of the store is exercised here, because runtime queries are not checked at
//! compile time.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;

use chrono::Duration;
use identity_service::model::api_keys::{ApiKey, KeyName};
use identity_service::model::audit::{Actor, AuditAction, AuditEvent, AuditFilter};
use identity_service::model::roles::RoleSet;
use identity_service::model::tenants::Tenant;
use identity_service::model::users::{AccountKind, DisplayName, User, UserType};
use identity_service::store::sql::SqlStore;
use identity_service::store::{
    DeleteUserOutcome, IdentityStore, KeyChangeKind, KeyRecord, RotateOutcome, StoreError,
};
use tollgate::ids::{ApiKeyId, TenantId, UserId};
use tollgate::keys::Environment;
use tollgate::time::now;

/// Who the suite's changes are recorded as made by.
const BY: Actor = Actor::Command("test");

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
    store.create_tenant(&t, &user, &key, &BY).await.unwrap();
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
    store.insert_user(&sa, &BY).await.unwrap();

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
        .update_user_roles(&t.id, &sa.id, &roles(&["event_reader"]), later, &BY)
        .await
        .unwrap()
        .expect("service account updated");
    assert_eq!(updated.roles, roles(&["event_reader"]));
    assert_eq!(updated.updated_at, later);
    assert_eq!(updated.created_at, sa.created_at);
    // A person's account has no roles to update, and another tenant's account is not there.
    let person = store
        .update_user_roles(&t.id, &admin.id, &roles(&["event_reader"]), later, &BY)
        .await
        .unwrap();
    assert_eq!(person, None);
    let foreign = store
        .update_user_roles(&other.id, &sa.id, &roles(&["event_reader"]), later, &BY)
        .await
        .unwrap();
    assert_eq!(foreign, None);
}

async fn keys_round_trip(store: Arc<dyn IdentityStore>) {
    let (t, admin, admin_key) = tenant(&store).await;
    let (other, _, _) = tenant(&store).await;
    let sa = service_account(&t, &["event_ingestor", "event_reader"]);
    store.insert_user(&sa, &BY).await.unwrap();
    let sa_key = issue(&sa, Some(Duration::hours(1)));
    store.insert_api_key(&sa_key, &BY).await.unwrap();

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

    assert!(
        !store
            .delete_api_key(&other.id, &sa_key.id, &BY)
            .await
            .unwrap()
    );
    assert!(store.delete_api_key(&t.id, &sa_key.id, &BY).await.unwrap());
    assert!(!store.delete_api_key(&t.id, &sa_key.id, &BY).await.unwrap());
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
    store.insert_user(&sa, &BY).await.unwrap();
    let keys = [issue(&sa, None), issue(&sa, None)];
    for key in &keys {
        store.insert_api_key(key, &BY).await.unwrap();
    }

    assert_eq!(
        store.delete_user(&other.id, &sa.id, &BY).await.unwrap(),
        DeleteUserOutcome::NotFound
    );
    assert_eq!(
        store.delete_user(&t.id, &sa.id, &BY).await.unwrap(),
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
        store.delete_user(&t.id, &sa.id, &BY).await.unwrap(),
        DeleteUserOutcome::NotFound
    );

    // The last person's account stays, and so does its key.
    assert_eq!(
        store.delete_user(&t.id, &admin.id, &BY).await.unwrap(),
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
    store.insert_user(&second, &BY).await.unwrap();
    assert_eq!(
        store.delete_user(&t.id, &admin.id, &BY).await.unwrap(),
        DeleteUserOutcome::Deleted {
            revoked_api_keys: 1
        }
    );
    assert_eq!(
        store.delete_user(&t.id, &second.id, &BY).await.unwrap(),
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
        store.insert_user(&u, &BY).await.unwrap();
        people.push(u);
    }
    let deletes = people.iter().map(|u| {
        let store = store.clone();
        let (tenant, id) = (t.id.clone(), u.id.clone());
        tokio::spawn(async move { store.delete_user(&tenant, &id, &BY).await })
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
        store.insert_api_key(&dup, &BY).await,
        Err(StoreError::UniqueViolation(_))
    ));
    // A key whose owner does not exist is a foreign-key violation.
    let ghost = service_account(&t, &["event_reader"]);
    assert!(matches!(
        store.insert_api_key(&issue(&ghost, None), &BY).await,
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
    let (t2, u2) = failed_bootstrap(&store, &admin_key).await;
    assert_eq!(store.get_user(&t2.id, &u2.id).await.unwrap(), None);
    assert!(store.reachable().await);
}

/// A bootstrap whose key's digest is `taken`'s: it fails at the key, after the tenant and its
/// user were written in the same transaction. The tenant and user it tried to make.
async fn failed_bootstrap(store: &Arc<dyn IdentityStore>, taken: &ApiKey) -> (Tenant, User) {
    let t = Tenant {
        id: TenantId::generate(),
        name: "t2".into(),
        created_at: now(),
    };
    let user = User::new(
        t.id.clone(),
        AccountKind::Person,
        DisplayName::default(),
        now(),
    );
    let mut key = issue(&user, None);
    key.digest = taken.digest;
    assert!(store.create_tenant(&t, &user, &key, &BY).await.is_err());
    (t, user)
}

/// A key's actor, as the gRPC adapter makes it.
fn by_key(key: &ApiKey) -> Actor {
    Actor::Key {
        key_id: key.id.clone(),
        user_id: key.user_id.clone(),
        environment: key.environment,
        address: Some("127.0.0.1".into()),
    }
}

/// Every audit record of a tenant matching `filter`, newest first, read in pages of two (so
/// that paging is exercised too).
async fn audit(store: &Arc<dyn IdentityStore>, t: &Tenant, filter: AuditFilter) -> Vec<AuditEvent> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_audit_events(&t.id, &filter, before, 2)
            .await
            .unwrap();
        before = page.last().map(|(seq, _)| *seq);
        let done = page.len() < 2;
        all.extend(page.into_iter().map(|(_, event)| event));
        if done {
            return all;
        }
    }
}

fn actions(events: &[AuditEvent]) -> Vec<AuditAction> {
    events.iter().rev().map(|e| e.action).collect()
}

async fn rotation_replaces_a_key_in_one_transaction(store: Arc<dyn IdentityStore>) {
    let (t, admin, admin_key) = tenant(&store).await;
    let (other, _, _) = tenant(&store).await;
    let sa = service_account(&t, &["event_ingestor"]);
    store.insert_user(&sa, &BY).await.unwrap();
    let old = issue(&sa, Some(Duration::days(90)));
    store.insert_api_key(&old, &BY).await.unwrap();
    // The account's roles change after the key was issued: the rotation keeps the key's.
    store
        .update_user_roles(&t.id, &sa.id, &roles(&["event_reader"]), now(), &BY)
        .await
        .unwrap();
    let (new, _) = old.successor(now()).unwrap();
    let grace_end = now() + Duration::hours(1);
    let actor = by_key(&admin_key);
    let latest = store.key_log_span().await.unwrap().latest;

    assert_eq!(
        store
            .rotate_api_key(&other.id, &old.id, &new, grace_end, &actor)
            .await
            .unwrap(),
        RotateOutcome::NotFound,
        "another tenant's key"
    );
    let RotateOutcome::Rotated(replaced) = store
        .rotate_api_key(&t.id, &old.id, &new, grace_end, &actor)
        .await
        .unwrap()
    else {
        panic!("not rotated")
    };
    assert_eq!(replaced.replaced_by, Some(new.id.clone()));
    assert_eq!(replaced.expires_at, Some(grace_end));
    assert_eq!(replaced.roles, old.roles);
    let stored_new = store.get_api_key(&t.id, &new.id).await.unwrap().unwrap();
    assert_eq!(stored_new.roles, roles(&["event_ingestor"]));
    assert_eq!(stored_new.expires_at, old.expires_at);
    assert_eq!(
        (stored_new.name.clone(), stored_new.user_id.clone()),
        (old.name.clone(), sa.id.clone())
    );
    assert!(
        store
            .find_api_key_by_digest(&new.digest)
            .await
            .unwrap()
            .is_some()
    );
    // Replicas learn of both: the new key issued, the old one changed.
    let changes = store.key_changes_after(latest, 10).await.unwrap();
    let kinds: Vec<_> = changes.iter().map(|c| (c.digest, c.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (new.digest, KeyChangeKind::Issued),
            (old.digest, KeyChangeKind::Changed)
        ]
    );

    // Rotated once: not again, and nothing is written by the refusal.
    let (third, _) = old.successor(now()).unwrap();
    assert_eq!(
        store
            .rotate_api_key(&t.id, &old.id, &third, grace_end, &actor)
            .await
            .unwrap(),
        RotateOutcome::AlreadyRotated(new.id.clone())
    );
    assert_eq!(store.get_api_key(&t.id, &third.id).await.unwrap(), None);

    // A grace never extends a key: one expiring sooner keeps its expiry.
    let short = issue(&admin, Some(Duration::minutes(5)));
    store.insert_api_key(&short, &BY).await.unwrap();
    let (short_new, _) = short.successor(now()).unwrap();
    let RotateOutcome::Rotated(short_old) = store
        .rotate_api_key(
            &t.id,
            &short.id,
            &short_new,
            now() + Duration::days(1),
            &actor,
        )
        .await
        .unwrap()
    else {
        panic!("not rotated")
    };
    assert_eq!(short_old.expires_at, short.expires_at);

    let rotations = audit(
        &store,
        &t,
        AuditFilter {
            action: Some(AuditAction::ApiKeyRotated),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rotations.len(), 2, "one record per rotation: {rotations:?}");
    let record = &rotations[1];
    assert_eq!(record.target_id, old.id.to_string());
    assert_eq!(record.replacement_id, Some(new.id.clone()));
    assert_eq!(record.actor, actor);
    assert_eq!(record.roles_before, Some(old.roles.clone()));
    assert_eq!(record.roles_after, Some(old.roles.clone()));
}

async fn every_change_is_audited_once(store: Arc<dyn IdentityStore>) {
    let (t, admin, admin_key) = tenant(&store).await;
    let actor = by_key(&admin_key);
    let sa = service_account(&t, &["event_ingestor"]);
    store.insert_user(&sa, &actor).await.unwrap();
    store
        .update_user_roles(&t.id, &sa.id, &roles(&["event_reader"]), now(), &actor)
        .await
        .unwrap();
    let k1 = issue(&sa, None);
    let k2 = issue(&sa, None);
    let k3 = issue(&admin, None);
    for k in [&k1, &k2, &k3] {
        store.insert_api_key(k, &actor).await.unwrap();
    }
    assert!(store.delete_api_key(&t.id, &k3.id, &actor).await.unwrap());
    store.delete_user(&t.id, &sa.id, &actor).await.unwrap();

    let all = audit(&store, &t, AuditFilter::default()).await;
    use AuditAction::*;
    assert_eq!(
        actions(&all),
        vec![
            TenantCreated,
            UserCreated,
            ApiKeyCreated,
            UserCreated,
            UserRolesUpdated,
            ApiKeyCreated,
            ApiKeyCreated,
            ApiKeyCreated,
            ApiKeyDeleted,
            UserDeleted,
            ApiKeyRevoked,
            ApiKeyRevoked,
        ]
    );
    // The bootstrap names its command; the rest, the key and its account and address.
    assert!(all[all.len() - 3..].iter().all(|e| e.actor == BY));
    assert!(all[..all.len() - 3].iter().all(|e| e.actor == actor));
    // Records are ordered by id too, and every id is distinct.
    let mut ids: Vec<_> = all.iter().map(|e| e.id.to_string()).collect();
    ids.dedup();
    assert_eq!(ids.len(), all.len());

    let roles_update = all.iter().find(|e| e.action == UserRolesUpdated).unwrap();
    assert_eq!(roles_update.target_id, sa.id.to_string());
    assert_eq!(roles_update.roles_before, Some(roles(&["event_ingestor"])));
    assert_eq!(roles_update.roles_after, Some(roles(&["event_reader"])));
    let revoked: Vec<_> = all
        .iter()
        .filter(|e| e.action == ApiKeyRevoked)
        .map(|e| e.target_id.clone())
        .collect();
    assert_eq!(revoked.len(), 2);
    assert!(revoked.contains(&k1.id.to_string()) && revoked.contains(&k2.id.to_string()));

    // Filters: by actor (key or account), target, action and time.
    let by_target = audit(
        &store,
        &t,
        AuditFilter {
            target_id: Some(sa.id.to_string()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        actions(&by_target),
        vec![UserCreated, UserRolesUpdated, UserDeleted]
    );
    for actor_id in [admin_key.id.to_string(), admin.id.to_string()] {
        let by_actor = audit(
            &store,
            &t,
            AuditFilter {
                actor_id: Some(actor_id),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(by_actor.len(), all.len() - 3);
    }
    let until_now = audit(
        &store,
        &t,
        AuditFilter {
            end: Some(now() + Duration::seconds(1)),
            start: Some(now() - Duration::hours(1)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(until_now.len(), all.len());
    let future = audit(
        &store,
        &t,
        AuditFilter {
            start: Some(now() + Duration::hours(1)),
            ..Default::default()
        },
    )
    .await;
    assert!(future.is_empty());
}

async fn a_failed_change_leaves_no_audit_record(store: Arc<dyn IdentityStore>) {
    let (t, admin, admin_key) = tenant(&store).await;
    let before = audit(&store, &t, AuditFilter::default()).await;
    // A key whose digest is taken: the insert fails, and so does its record.
    let mut dup = issue(&admin, None);
    dup.digest = admin_key.digest;
    assert!(store.insert_api_key(&dup, &BY).await.is_err());
    // The last person is not deleted, and nothing is recorded.
    assert_eq!(
        store.delete_user(&t.id, &admin.id, &BY).await.unwrap(),
        DeleteUserOutcome::LastUser
    );
    // Nothing deleted, nothing recorded.
    assert!(
        !store
            .delete_api_key(&t.id, &ApiKeyId::generate(), &BY)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .update_user_roles(&t.id, &admin.id, &roles(&["event_reader"]), now(), &BY)
            .await
            .unwrap(),
        None,
        "a person's roles are not updated"
    );
    // A bootstrap that fails half-way leaves neither its rows nor its records.
    let (t2, _) = failed_bootstrap(&store, &admin_key).await;
    assert!(audit(&store, &t2, AuditFilter::default()).await.is_empty());
    assert_eq!(audit(&store, &t, AuditFilter::default()).await, before);
}

async fn audit_records_stay_in_their_tenant(store: Arc<dyn IdentityStore>) {
    let (a, _, a_key) = tenant(&store).await;
    let (b, _, b_key) = tenant(&store).await;
    let sa = service_account(&b, &["event_reader"]);
    store.insert_user(&sa, &by_key(&b_key)).await.unwrap();
    let of_a = audit(&store, &a, AuditFilter::default()).await;
    let of_b = audit(&store, &b, AuditFilter::default()).await;
    assert_eq!(of_a.len(), 3);
    assert_eq!(of_b.len(), 4);
    assert!(of_a.iter().all(|e| e.tenant_id == a.id));
    assert!(of_b.iter().all(|e| e.tenant_id == b.id));
    // Filtering on the other tenant's ids finds nothing.
    let foreign = audit(
        &store,
        &a,
        AuditFilter {
            target_id: Some(sa.id.to_string()),
            ..Default::default()
        },
    )
    .await;
    assert!(foreign.is_empty());
    let foreign_actor = audit(
        &store,
        &a,
        AuditFilter {
            actor_id: Some(b_key.id.to_string()),
            ..Default::default()
        },
    )
    .await;
    assert!(foreign_actor.is_empty());
    assert_ne!(a_key.tenant_id, b_key.tenant_id);
}

async fn the_change_log_keeps_its_position_when_pruned(store: Arc<dyn IdentityStore>) {
    let (_, admin, _) = tenant(&store).await;
    let key = issue(&admin, None);
    store.insert_api_key(&key, &BY).await.unwrap();
    let span = store.key_log_span().await.unwrap();
    assert!(span.latest >= span.oldest && span.oldest > 0);
    // Everything is old enough to go, but the latest change stays: it is the position a
    // follower resumes from.
    store
        .prune_key_changes(now() + Duration::hours(1))
        .await
        .unwrap();
    let pruned = store.key_log_span().await.unwrap();
    assert_eq!((pruned.oldest, pruned.latest), (span.latest, span.latest));
    assert!(pruned.continues(span.latest));
    assert!(pruned.continues(span.latest - 1));
    assert!(span.latest - 2 < 1 || !pruned.continues(span.latest - 2));
    assert!(
        !pruned.continues(span.latest + 1),
        "a number beyond the log"
    );
}

tollgate::store_suite!(
    crate::connect;
    rotation_replaces_a_key_in_one_transaction,
    every_change_is_audited_once,
    a_failed_change_leaves_no_audit_record,
    audit_records_stay_in_their_tenant,
    the_change_log_keeps_its_position_when_pruned,
    users_round_trip,
    keys_round_trip,
    delete_user_revokes_keys_and_keeps_one_person,
    concurrent_deletes_leave_one_person,
    constraints_are_classified,
);
