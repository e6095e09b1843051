//! Reading the audit log.

use tollgate::paging::Page;
use tollgate::permissions::Permission;

use crate::model::audit::{AuditEvent, AuditFilter};
use crate::model::principal::Principal;
use crate::{Identity, IdentityError};

impl Identity {
    /// A page of the caller's tenant's audit records matching `filter`, newest first; the
    /// second value is the position to continue after when more may follow. A sandbox key sees
    /// the sandbox's records only.
    pub async fn list_audit_events(
        &self,
        caller: &Principal,
        mut filter: AuditFilter,
        page: Page<i64>,
    ) -> Result<(Vec<AuditEvent>, Option<i64>), IdentityError> {
        caller.require(Permission::UsersManage)?;
        if !caller.reaches(tollgate::keys::Environment::Production) {
            filter.environment = Some(caller.environment);
        }
        let rows = self
            .store
            .list_audit_events(&caller.tenant_id, &filter, page.after, page.probe())
            .await?;
        let (rows, next) = page.split(rows, |(seq, _)| *seq);
        Ok((rows.into_iter().map(|(_, event)| event).collect(), next))
    }
}
