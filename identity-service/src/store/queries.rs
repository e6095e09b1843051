//! The SQL of [`IdentityStore`](super::IdentityStore), written once and expanded for each
//! backend by `identity_store_impl!`. sqlx's runtime queries are typed by backend, so a generic
//! implementation would need a tower of higher-ranked bounds; a macro keeps one copy of the SQL
//! readable instead. Each backend module supplies `Self::pool` and a [`Dialect`](super::Dialect).

/// Column list of `users`, in [`UserRow`](super::UserRow) order.
macro_rules! user_columns {
    () => {
        "id, tenant_id, user_type, name, roles, created_at, updated_at"
    };
}

/// Column list of `api_keys`, in [`ApiKeyRow`](super::ApiKeyRow) order.
macro_rules! api_key_columns {
    () => {
        "id, tenant_id, user_id, user_type, environment, name, roles, digest, display_hint, \
         created_at, expires_at, last_used_at"
    };
}

macro_rules! identity_store_impl {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn insert_user_in<'e, E>(
                executor: E,
                user: &$crate::users::User,
            ) -> Result<(), $crate::store::StoreError>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                sqlx::query(concat!(
                    "INSERT INTO users (",
                    user_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ))
                .bind(user.id.as_str())
                .bind(user.tenant_id.as_str())
                .bind(user.user_type.as_str())
                .bind(user.name.as_str())
                .bind(user.roles.to_storage())
                .bind(tollgate::time::to_micros(user.created_at))
                .bind(tollgate::time::to_micros(user.updated_at))
                .execute(executor)
                .await?;
                Ok(())
            }

            async fn insert_api_key_in<'e, E>(
                executor: E,
                key: &$crate::api_keys::ApiKey,
            ) -> Result<(), $crate::store::StoreError>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                sqlx::query(concat!(
                    "INSERT INTO api_keys (",
                    api_key_columns!(),
                    ") ",
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ))
                .bind(key.id.as_str())
                .bind(key.tenant_id.as_str())
                .bind(key.user_id.as_str())
                .bind(key.user_type.as_str())
                .bind(key.environment.as_str())
                .bind(key.name.as_str())
                .bind(key.roles.to_storage())
                .bind(key.digest.as_bytes().as_slice())
                .bind(key.display_hint.as_str())
                .bind(tollgate::time::to_micros(key.created_at))
                .bind(key.expires_at.map(tollgate::time::to_micros))
                .bind(key.last_used_at.map(tollgate::time::to_micros))
                .execute(executor)
                .await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::IdentityStore for $store {
            fn pool_stats(&self) -> (u32, usize) {
                (self.pool.size(), self.pool.num_idle())
            }

            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn create_tenant(
                &self,
                tenant: &$crate::tenants::Tenant,
                user: &$crate::users::User,
                key: &$crate::api_keys::ApiKey,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::Dialect>::BEGIN_WRITE)
                    .await?;
                sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(tenant.id.as_str())
                    .bind(tenant.name.as_str())
                    .bind(tollgate::time::to_micros(tenant.created_at))
                    .execute(&mut *tx)
                    .await?;
                Self::insert_user_in(&mut *tx, user).await?;
                Self::insert_api_key_in(&mut *tx, key).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn find_tenant_by_name(
                &self,
                name: &str,
            ) -> Result<Option<$crate::tenants::Tenant>, $crate::store::StoreError> {
                sqlx::query_as::<_, $crate::store::TenantRow>(
                    "SELECT id, name, created_at FROM tenants WHERE name = $1 ORDER BY id LIMIT 1",
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn insert_user(
                &self,
                user: &$crate::users::User,
            ) -> Result<(), $crate::store::StoreError> {
                Self::insert_user_in(&self.pool, user).await
            }

            async fn get_user(
                &self,
                tenant: &tollgate::ids::TenantId,
                id: &tollgate::ids::UserId,
            ) -> Result<Option<$crate::users::User>, $crate::store::StoreError> {
                sqlx::query_as::<_, $crate::store::UserRow>(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn list_users(
                &self,
                tenant: &tollgate::ids::TenantId,
                filter: Option<$crate::users::UserType>,
                after: Option<&tollgate::ids::UserId>,
                limit: u32,
            ) -> Result<Vec<$crate::users::User>, $crate::store::StoreError> {
                sqlx::query_as::<_, $crate::store::UserRow>(concat!(
                    "SELECT ",
                    user_columns!(),
                    " FROM users WHERE tenant_id = $1 ",
                    "AND ($2 IS NULL OR user_type = $2) AND ($3 IS NULL OR id > $3) ",
                    "ORDER BY id LIMIT $4"
                ))
                .bind(tenant.as_str())
                .bind(filter.map(|t| t.as_str()))
                .bind(after.map(|id| id.as_str()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
            }

            async fn update_user_roles(
                &self,
                tenant: &tollgate::ids::TenantId,
                id: &tollgate::ids::UserId,
                roles: &$crate::roles::RoleSet,
                now: chrono::DateTime<chrono::Utc>,
            ) -> Result<Option<$crate::users::User>, $crate::store::StoreError> {
                sqlx::query_as::<_, $crate::store::UserRow>(concat!(
                    "UPDATE users SET roles = $3, updated_at = $4 ",
                    "WHERE tenant_id = $1 AND id = $2 AND user_type = 'service_account' ",
                    "RETURNING ",
                    user_columns!()
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .bind(roles.to_storage())
                .bind(tollgate::time::to_micros(now))
                .fetch_optional(&self.pool)
                .await?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn delete_user(
                &self,
                tenant: &tollgate::ids::TenantId,
                id: &tollgate::ids::UserId,
            ) -> Result<$crate::store::DeleteUserOutcome, $crate::store::StoreError> {
                use $crate::store::DeleteUserOutcome;
                let mut tx = self
                    .pool
                    .begin_with(<Self as $crate::store::Dialect>::BEGIN_WRITE)
                    .await?;
                if let Some(lock) = <Self as $crate::store::Dialect>::LOCK_TENANT {
                    sqlx::query(lock)
                        .bind(tenant.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                let user_type: Option<String> = sqlx::query_scalar(
                    "SELECT user_type FROM users WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(user_type) = user_type else {
                    return Ok(DeleteUserOutcome::NotFound);
                };
                if user_type == $crate::users::UserType::User.as_str() {
                    let people: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND user_type = 'user'",
                    )
                    .bind(tenant.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    if people <= 1 {
                        return Ok(DeleteUserOutcome::LastUser);
                    }
                }
                let revoked =
                    sqlx::query("DELETE FROM api_keys WHERE tenant_id = $1 AND user_id = $2")
                        .bind(tenant.as_str())
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                sqlx::query("DELETE FROM users WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(DeleteUserOutcome::Deleted {
                    revoked_api_keys: revoked,
                })
            }

            async fn insert_api_key(
                &self,
                key: &$crate::api_keys::ApiKey,
            ) -> Result<(), $crate::store::StoreError> {
                Self::insert_api_key_in(&self.pool, key).await
            }

            async fn get_api_key(
                &self,
                tenant: &tollgate::ids::TenantId,
                id: &tollgate::ids::ApiKeyId,
            ) -> Result<Option<$crate::api_keys::ApiKey>, $crate::store::StoreError> {
                sqlx::query_as::<_, $crate::store::ApiKeyRow>(concat!(
                    "SELECT ",
                    api_key_columns!(),
                    " FROM api_keys WHERE tenant_id = $1 AND id = $2"
                ))
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn list_api_keys(
                &self,
                tenant: &tollgate::ids::TenantId,
                owner: Option<&tollgate::ids::UserId>,
                after: Option<&tollgate::ids::ApiKeyId>,
                limit: u32,
            ) -> Result<Vec<$crate::api_keys::ApiKey>, $crate::store::StoreError> {
                sqlx::query_as::<_, $crate::store::ApiKeyRow>(concat!(
                    "SELECT ",
                    api_key_columns!(),
                    " FROM api_keys WHERE tenant_id = $1 ",
                    "AND ($2 IS NULL OR user_id = $2) AND ($3 IS NULL OR id > $3) ",
                    "ORDER BY id LIMIT $4"
                ))
                .bind(tenant.as_str())
                .bind(owner.map(|id| id.as_str()))
                .bind(after.map(|id| id.as_str()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
            }

            async fn delete_api_key(
                &self,
                tenant: &tollgate::ids::TenantId,
                id: &tollgate::ids::ApiKeyId,
            ) -> Result<bool, $crate::store::StoreError> {
                let deleted = sqlx::query("DELETE FROM api_keys WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.as_str())
                    .bind(id.as_str())
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(deleted > 0)
            }

            async fn find_api_key_by_digest(
                &self,
                digest: &tollgate::keys::KeyDigest,
            ) -> Result<Option<$crate::api_keys::ApiKey>, $crate::store::StoreError> {
                sqlx::query_as::<_, $crate::store::ApiKeyRow>(concat!(
                    "SELECT ",
                    api_key_columns!(),
                    " FROM api_keys WHERE digest = $1"
                ))
                .bind(digest.as_bytes().as_slice())
                .fetch_optional(&self.pool)
                .await?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn touch_api_key(
                &self,
                id: &tollgate::ids::ApiKeyId,
                now: chrono::DateTime<chrono::Utc>,
                stale_before: chrono::DateTime<chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $2 \
                     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
                )
                .bind(id.as_str())
                .bind(tollgate::time::to_micros(now))
                .bind(tollgate::time::to_micros(stale_before))
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}
