//! A contact's last-call fields: one call at a time writes them, and an
//! older call never overwrites a newer one's.

use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{CallLease, ContactId, LedgerError, Step, Timed, on_call};

/// Whether a call may write a contact's last-call fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatestCall {
    /// It is the newest call seen for the contact: write, then release.
    Write,
    /// A newer call has claimed the fields: leave them.
    Older,
    /// Another call's write is in flight: wait for it.
    Busy,
}

impl CallLease<'_> {
    /// Takes the right to write the contact's last-call fields for the
    /// lease's call: granted when no newer call has claimed them and no other call's
    /// write is in flight. The grant is a lease, like a call's: claiming
    /// again extends it, and it lapses by itself if the worker dies.
    pub async fn claim_latest_call(
        self,
        contact_id: &ContactId,
        ended_at: OffsetDateTime,
    ) -> Result<LatestCall, LedgerError> {
        self.latest_call(contact_id, ended_at, Some(self.owner))
            .await
    }

    /// Records the lease's call as the contact's newest without holding the
    /// fields (a contact just created with them needs no update); `Write`
    /// means it was recorded.
    pub async fn record_latest_call(
        self,
        contact_id: &ContactId,
        ended_at: OffsetDateTime,
    ) -> Result<LatestCall, LedgerError> {
        self.latest_call(contact_id, ended_at, None).await
    }

    async fn latest_call(
        self,
        contact_id: &ContactId,
        ended_at: OffsetDateTime,
        owner: Option<Uuid>,
    ) -> Result<LatestCall, LedgerError> {
        let ledger = self.ledger;
        let granted = ledger
            .on_contact(
                "INSERT INTO contact_last_call
                        (crm, contact_id, ended_at, source, call_id, lease_owner, lease_until)
                 VALUES ($1, $2, $3, $4, $5, $6,
                         CASE WHEN $6::uuid IS NULL THEN NULL
                              ELSE now() + make_interval(secs => $7) END)
                 ON CONFLICT (crm, contact_id) DO UPDATE
                    SET ended_at = EXCLUDED.ended_at, source = EXCLUDED.source,
                        call_id = EXCLUDED.call_id, lease_owner = EXCLUDED.lease_owner,
                        lease_until = EXCLUDED.lease_until
                  WHERE contact_last_call.ended_at <= EXCLUDED.ended_at
                    AND (contact_last_call.lease_until IS NULL
                         OR contact_last_call.lease_until < now()
                         OR (contact_last_call.source = EXCLUDED.source
                             AND contact_last_call.call_id = EXCLUDED.call_id))
                 RETURNING 1",
                contact_id.as_str(),
            )
            .bind(ended_at)
            .bind(self.key.source.as_str())
            .bind(self.key.call_id.as_str())
            .bind(owner)
            .bind(ledger.lease_secs)
            .fetch_optional(&ledger.pool)
            .timed("last_call")
            .await?;
        if granted.is_some() {
            return Ok(LatestCall::Write);
        }
        let newest = ledger
            .on_contact(
                "SELECT ended_at FROM contact_last_call WHERE crm = $1 AND contact_id = $2",
                contact_id.as_str(),
            )
            .fetch_optional(&ledger.pool)
            .timed("last_call")
            .await?;
        let newest: Option<OffsetDateTime> = newest.map(|row| row.try_get(0)).transpose()?;
        Ok(match newest {
            Some(newest) if newest > ended_at => LatestCall::Older,
            _ => LatestCall::Busy,
        })
    }

    /// Takes the contact's write lease for a call older than its newest,
    /// which still writes the fields every call writes (a mapping's
    /// `if_empty` and `append`): granted when no other call's write is in
    /// flight, leaving the newest call recorded as it is. Those writes read
    /// the field and write it back, so two of them at once could lose a
    /// line; the lease makes them one at a time, the newest call's
    /// included. `false`: another write holds it; wait.
    pub async fn claim_contact_write(self, contact_id: &ContactId) -> Result<bool, LedgerError> {
        let granted = self
            .ledger
            .on_contact(
                "UPDATE contact_last_call
                    SET lease_owner = $3, lease_until = now() + make_interval(secs => $4)
                  WHERE crm = $1 AND contact_id = $2
                    AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $3)
                 RETURNING 1",
                contact_id.as_str(),
            )
            .bind(self.owner)
            .bind(self.ledger.lease_secs)
            .fetch_optional(&self.ledger.pool)
            .timed("claim_contact_write")
            .await?;
        Ok(granted.is_some())
    }

    /// Records the contact update as done and, when `release`, gives up the
    /// right to write the last-call fields, in one statement. Without
    /// `release` the lease is left to expire: an earlier attempt of the
    /// same update whose outcome was unknown may still land, and no newer
    /// call's update may be sent before it could.
    pub async fn finish_update(
        self,
        contact_id: &ContactId,
        release: bool,
    ) -> Result<(), LedgerError> {
        on_call(
            "WITH released AS (
                UPDATE contact_last_call SET lease_owner = NULL, lease_until = NULL
                 WHERE crm = $5 AND contact_id = $4 AND lease_owner = $6 AND $7
             )
             INSERT INTO call_steps (source, call_id, step, state, crm_object_id, started_at, done_at)
             VALUES ($1, $2, $3, 'done', $4, now(), now())
             ON CONFLICT (source, call_id, step) DO UPDATE
                SET state = 'done', crm_object_id = EXCLUDED.crm_object_id, done_at = now()",
            self.key,
        )
        .bind(Step::ContactUpdate.as_str())
        .bind(contact_id.as_str())
        .bind(self.ledger.crm)
        .bind(self.owner)
        .bind(release)
        .execute(&self.ledger.pool)
        .timed("finish_update")
        .await?;
        Ok(())
    }

    /// Gives up the right to write the last-call fields after a failed
    /// write (the fields stay claimed by the call, only the lease ends).
    pub async fn release_latest_call(self, contact_id: &ContactId) -> Result<(), LedgerError> {
        self.ledger
            .on_contact(
                "UPDATE contact_last_call SET lease_owner = NULL, lease_until = NULL
              WHERE crm = $1 AND contact_id = $2 AND lease_owner = $3",
                contact_id.as_str(),
            )
            .bind(self.owner)
            .execute(&self.ledger.pool)
            .await?;
        Ok(())
    }
}
