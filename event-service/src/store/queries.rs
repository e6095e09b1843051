//! The SQL of [`EventStore`](super::EventStore), written once and expanded for each backend by
//! `event_store_impl!` (sqlx's runtime queries are typed by backend; a macro keeps one readable
//! copy instead of a generic impl under a tower of higher-ranked bounds). `QueryBuilder` writes
//! each backend's placeholders; each backend supplies `Self::pool`, `Self::writer` (a pool of its
//! own for writes, if any), `Self::WRITERS`, its own `Self::insert_statement` (the one statement
//! whose best shape differs: multi-row `VALUES` on SQLite, `UNNEST` of column arrays on
//! PostgreSQL), `Self::insert_new` (the common case of all rows new: those statements on SQLite,
//! `COPY` on PostgreSQL) and a [`Dialect`](super::Dialect). Trait methods only one backend
//! overrides follow the backend's types in braces.

/// The columns every insert writes, in the order each backend supplies their values (a macro so
/// that `concat!` can build each statement from them).
macro_rules! insert_columns {
    () => {
        "scope_id, event_id, event_name, external_customer_id, ts, properties, source, ingested_at"
    };
}

macro_rules! event_store_impl {
    ($store:ty, $db:ty $(, { $($own:item)* })?) => {
        impl $store {
            /// Where writes go: the writer's own pool if the backend has one, else the pool.
            fn write_pool(&self) -> &sqlx::Pool<$db> {
                self.writer.as_ref().unwrap_or(&self.pool)
            }

            /// Inserts the rows whose ids are not stored yet, in one transaction, and says
            /// which those were. The database returns the key of each row it inserts; the keys
            /// are matched as a multiset (an id sent twice is inserted once and is a duplicate
            /// the second time).
            async fn insert_sorting_duplicates(
                &self,
                rows: &[$crate::store::Row<'_>],
                ingested_at: i64,
            ) -> Result<Vec<bool>, sqlx::Error> {
                use std::collections::HashMap;
                use $crate::store::Dialect;
                let mut tx = self
                    .write_pool()
                    .begin_with(<Self as Dialect>::BEGIN_WRITE)
                    .await?;
                let mut new_rows = vec![false; rows.len()];
                let per_statement = <Self as Dialect>::ROWS_PER_STATEMENT;
                let chunks = rows.chunks(per_statement).zip(new_rows.chunks_mut(per_statement));
                for (chunk, flags) in chunks {
                    let mut qb = Self::insert_statement(chunk, ingested_at)?;
                    qb.push($crate::store::ON_CONFLICT);
                    qb.push(" RETURNING scope_id, event_id");
                    let returned: Vec<(i64, String)> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    let mut inserted: HashMap<(i64, String), usize> = HashMap::new();
                    for key in returned {
                        *inserted.entry(key).or_default() += 1;
                    }
                    for (flag, (scope_id, e)) in flags.iter_mut().zip(chunk) {
                        let key = (*scope_id, e.event_id.clone());
                        if let Some(count) = inserted.get_mut(&key).filter(|c| **c > 0) {
                            *count -= 1;
                            *flag = true;
                        }
                    }
                }
                tx.commit().await?;
                Ok(new_rows)
            }

            fn push_select(qb: &mut sqlx::QueryBuilder<'_, $db>) {
                qb.push("SELECT seq, event_id, event_name, external_customer_id, ts, ");
                qb.push(<Self as $crate::store::Dialect>::PROPERTIES_TEXT);
                qb.push(" AS properties, source, ingested_at FROM events WHERE scope_id = ");
            }

            /// The scope's id, creating the scope first when `create`; `None` when it does not
            /// exist (nothing was ever written there).
            async fn scope_id(
                &self,
                scope: &$crate::events::Scope,
                create: bool,
            ) -> Result<Option<i64>, $crate::store::StoreError> {
                if let Some(id) = self.scopes.get(scope) {
                    return Ok(Some(id));
                }
                if create {
                    sqlx::query(
                        "INSERT INTO scopes (tenant_id, environment) VALUES ($1, $2) \
                         ON CONFLICT (tenant_id, environment) DO NOTHING",
                    )
                    .bind(scope.tenant_id.as_str())
                    .bind(scope.environment.as_str())
                    .execute(self.write_pool())
                    .await?;
                }
                let id: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM scopes WHERE tenant_id = $1 AND environment = $2",
                )
                .bind(scope.tenant_id.as_str())
                .bind(scope.environment.as_str())
                .fetch_optional(&self.pool)
                .await?;
                if let Some(id) = id {
                    self.scopes.insert(scope, id);
                }
                Ok(id)
            }

            /// The aggregated expression over one event's value, and the expression counting
            /// the events that have one.
            fn push_value<'a>(
                qb: &mut sqlx::QueryBuilder<'a, $db>,
                aggregation: &'a $crate::events::usage::Aggregation,
                counted: bool,
            ) {
                use $crate::events::usage::Aggregation;
                use $crate::store::Dialect;
                let numeric = |qb: &mut sqlx::QueryBuilder<'a, $db>, name: &str| {
                    let [a, b, c] = <Self as Dialect>::NUMERIC_PROPERTY;
                    qb.push(a);
                    qb.push_bind(<Self as Dialect>::property_path(name));
                    qb.push(b);
                    qb.push_bind(<Self as Dialect>::property_path(name));
                    qb.push(c);
                };
                let (function, distinct) = match aggregation {
                    Aggregation::Count => ("COUNT", false),
                    Aggregation::Sum(_) => ("SUM", false),
                    Aggregation::Min(_) => ("MIN", false),
                    Aggregation::Max(_) => ("MAX", false),
                    Aggregation::CountUnique(_) => ("COUNT", true),
                };
                let function = if counted { "COUNT" } else { function };
                qb.push(function);
                qb.push(if distinct && !counted {
                    "(DISTINCT "
                } else {
                    "("
                });
                match aggregation {
                    Aggregation::Count => {
                        qb.push("*");
                    }
                    Aggregation::Sum(p) | Aggregation::Min(p) | Aggregation::Max(p) => {
                        numeric(qb, p.as_str())
                    }
                    Aggregation::CountUnique(None) => {
                        qb.push("external_customer_id");
                    }
                    Aggregation::CountUnique(Some(p)) => {
                        let [a, b] = <Self as Dialect>::TEXT_PROPERTY;
                        qb.push(a);
                        qb.push_bind(<Self as Dialect>::property_path(p.as_str()));
                        qb.push(b);
                    }
                }
                qb.push(")");
            }

            async fn usage_rows(
                &self,
                scope_id: i64,
                query: &$crate::events::usage::UsageQuery,
                grouped: bool,
            ) -> Result<Vec<$crate::events::usage::UsageRow>, $crate::store::StoreError> {
                let window = query.window.filter(|_| grouped);
                let by_customer = query.group_by_customer && grouped;
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT ");
                match window {
                    Some(width) => {
                        qb.push("ts / ").push_bind(width).push(" AS win, ");
                    }
                    None => {
                        qb.push("CAST(NULL AS BIGINT) AS win, ");
                    }
                }
                qb.push(if by_customer {
                    "external_customer_id AS customer, "
                } else {
                    "CAST(NULL AS TEXT) AS customer, "
                });
                qb.push("CAST(");
                Self::push_value(&mut qb, &query.aggregation, false);
                qb.push(" AS DOUBLE PRECISION) AS value, ");
                Self::push_value(&mut qb, &query.aggregation, true);
                qb.push(" AS n FROM events WHERE scope_id = ")
                    .push_bind(scope_id);
                qb.push(" AND event_name = ")
                    .push_bind(query.event_name.as_str());
                qb.push(" AND ts >= ").push_bind(query.start);
                qb.push(" AND ts < ").push_bind(query.end);
                if let Some(customer) = &query.external_customer_id {
                    qb.push(" AND external_customer_id = ")
                        .push_bind(customer.as_str());
                }
                match (window.is_some(), by_customer) {
                    (true, true) => {
                        qb.push(" GROUP BY win, customer");
                    }
                    (true, false) => {
                        qb.push(" GROUP BY win");
                    }
                    (false, true) => {
                        qb.push(" GROUP BY customer");
                    }
                    (false, false) => {}
                }
                // Leave out windows and customers with nothing to count.
                qb.push(" HAVING ");
                Self::push_value(&mut qb, &query.aggregation, true);
                qb.push(" > 0");
                if window.is_some() || by_customer {
                    qb.push(" ORDER BY win, customer");
                }
                let rows: Vec<$crate::store::UsageRowRaw> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows
                    .into_iter()
                    .map(|r| $crate::events::usage::UsageRow {
                        window: r.win,
                        external_customer_id: r.customer,
                        value: r.value.unwrap_or_default(),
                        event_count: r.n,
                    })
                    .collect())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::EventStore for $store {
            fn pool_stats(&self) -> (u32, usize) {
                let pools = std::iter::once(&self.pool).chain(self.writer.as_ref());
                pools.fold((0, 0), |(size, idle), pool| {
                    (size + pool.size(), idle + pool.num_idle())
                })
            }

            fn writers(&self) -> usize {
                Self::WRITERS
            }

            $($($own)*)?

            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn insert(
                &self,
                batches: &[$crate::store::Batch<'_>],
            ) -> Result<Vec<Vec<bool>>, $crate::store::StoreError> {
                let ingested_at = tollgate::time::to_micros(tollgate::time::now());
                // Scopes are created outside the transaction: creating one is idempotent, and a
                // cached id must never point at a row a rollback removed.
                let mut scope_ids = Vec::with_capacity(batches.len());
                for (scope, _) in batches {
                    scope_ids.push(
                        self.scope_id(scope, true)
                            .await?
                            .ok_or(sqlx::Error::RowNotFound)?,
                    );
                }
                let rows: Vec<$crate::store::Row<'_>> = batches
                    .iter()
                    .zip(&scope_ids)
                    .flat_map(|((_, events), id)| events.iter().map(move |e| (*id, e)))
                    .collect();
                // The common case: every row is new. Plain inserts are tried first: ON CONFLICT
                // makes PostgreSQL insert each row speculatively, probing the idempotency index
                // before and after, while a plain insert meets a stored id as a unique violation
                // that undoes the whole attempt. Only then are the duplicates sorted out.
                let new_rows = match self.insert_new(&rows, ingested_at).await {
                    Ok(()) => vec![true; rows.len()],
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        self.insert_sorting_duplicates(&rows, ingested_at).await?
                    }
                    Err(e) => return Err(e.into()),
                };
                let mut flags = new_rows.into_iter();
                Ok(batches
                    .iter()
                    .map(|(_, events)| flags.by_ref().take(events.len()).collect())
                    .collect())
            }

            async fn get_event(
                &self,
                scope: &$crate::events::Scope,
                event_id: &str,
            ) -> Result<Option<$crate::events::Event>, $crate::store::StoreError> {
                let Some(scope_id) = self.scope_id(scope, false).await? else {
                    return Ok(None);
                };
                let mut qb = sqlx::QueryBuilder::<$db>::new("");
                Self::push_select(&mut qb);
                qb.push_bind(scope_id);
                qb.push(" AND event_id = ").push_bind(event_id);
                let row: Option<$crate::store::EventRow> =
                    qb.build_query_as().fetch_optional(&self.pool).await?;
                Ok(row.map(Into::into))
            }

            async fn list_events(
                &self,
                scope: &$crate::events::Scope,
                filter: &$crate::events::query::ListFilter,
                after: Option<$crate::events::query::Cursor>,
                limit: u32,
            ) -> Result<Vec<$crate::events::Event>, $crate::store::StoreError> {
                let Some(scope_id) = self.scope_id(scope, false).await? else {
                    return Ok(Vec::new());
                };
                let mut qb = sqlx::QueryBuilder::<$db>::new("");
                Self::push_select(&mut qb);
                qb.push_bind(scope_id);
                if let Some(name) = &filter.event_name {
                    qb.push(" AND event_name = ").push_bind(name.as_str());
                }
                if let Some(customer) = &filter.external_customer_id {
                    qb.push(" AND external_customer_id = ")
                        .push_bind(customer.as_str());
                }
                if let Some(source) = &filter.source {
                    qb.push(" AND source = ").push_bind(source.as_str());
                }
                if let Some(start) = filter.start_time {
                    qb.push(" AND ts >= ")
                        .push_bind(tollgate::time::to_micros(start));
                }
                if let Some(end) = filter.end_time {
                    qb.push(" AND ts < ")
                        .push_bind(tollgate::time::to_micros(end));
                }
                if let Some(cursor) = after {
                    // A row-value comparison, unlike the equivalent OR, lets both SQLite and
                    // PostgreSQL seek the (ts DESC, seq DESC) index to the cursor instead of
                    // scanning every newer row: a deep page costs what the first one does.
                    qb.push(" AND (ts, seq) < (").push_bind(cursor.ts);
                    qb.push(", ").push_bind(cursor.seq);
                    qb.push(")");
                }
                qb.push(" ORDER BY ts DESC, seq DESC LIMIT ")
                    .push_bind(i64::from(limit));
                let rows: Vec<$crate::store::EventRow> =
                    qb.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn usage(
                &self,
                scope: &$crate::events::Scope,
                query: &$crate::events::usage::UsageQuery,
            ) -> Result<$crate::events::usage::UsageReport, $crate::store::StoreError> {
                let Some(scope_id) = self.scope_id(scope, false).await? else {
                    return Ok($crate::events::usage::UsageReport {
                        rows: Vec::new(),
                        total: 0.0,
                    });
                };
                let rows = self.usage_rows(scope_id, query, true).await?;
                let total = if query.window.is_none() && !query.group_by_customer {
                    rows.first().map(|r| r.value).unwrap_or_default()
                } else {
                    // Distinct counts, minima and maxima do not add up: ask for the total.
                    self.usage_rows(scope_id, query, false)
                        .await?
                        .first()
                        .map(|r| r.value)
                        .unwrap_or_default()
                };
                Ok($crate::events::usage::UsageReport { rows, total })
            }
        }
    };
}
