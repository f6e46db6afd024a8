//! Contact lookup keys: one owner at a time looks up or creates the contact
//! of a phone number (or e-mail), and the contact found is remembered, since
//! a CRM's search index may not show a new contact for a while.

use std::fmt;

use sqlx::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Ledger, LedgerError, Timed};

/// A contact's id in the CRM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ContactId(String);

impl ContactId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for ContactId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for ContactId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl fmt::Display for ContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a caller's contact is looked up by: the phone number (E.164 when it
/// could be normalised) if there is one, else the e-mail address.
///
/// Display and Debug are redacted, because both end up in logs and errors:
/// the number masked to its last four digits, the address to its domain.
/// The ledger's own text is [`LookupKey::column`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum LookupKey {
    Phone(String),
    Email(String),
}

impl LookupKey {
    /// The number if there is one, else the address; `None` without either.
    pub fn for_caller(phone: Option<&str>, email: Option<&str>) -> Option<Self> {
        match (phone, email) {
            (Some(phone), _) => Some(Self::Phone(phone.to_owned())),
            (None, Some(email)) => Some(Self::Email(email.to_owned())),
            (None, None) => None,
        }
    }

    /// The key as the `contacts` table holds it (`phone:+31…`, `email:…`).
    pub fn column(&self) -> String {
        match self {
            Self::Phone(number) => format!("phone:{number}"),
            Self::Email(address) => format!("email:{address}"),
        }
    }
}

impl fmt::Display for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Phone(number) => write!(f, "phone:{}", callsync_shared::phone::mask(number)),
            Self::Email(address) => write!(
                f,
                "email:***@{}",
                address.rsplit_once('@').map_or("", |(_, domain)| domain)
            ),
        }
    }
}

impl fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LookupKey({self})")
    }
}

/// The outcome of trying to take a contact lookup key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactClaim {
    /// The contact is known; no lease was taken.
    Known(ContactId),
    /// This worker holds the key; `pending_since` is set when an earlier
    /// create's outcome is unknown.
    Acquired {
        pending_since: Option<OffsetDateTime>,
    },
    Busy,
}

/// What became of the contact create an attempt sent, when it released the
/// lookup key after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentCreate {
    /// No create was sent by this attempt.
    None,
    /// A create was sent and certainly not applied.
    NotApplied,
    /// A create was sent and may have been applied.
    Unknown,
}

impl SentCreate {
    fn as_str(self) -> &'static str {
        match self {
            SentCreate::None => "none",
            SentCreate::NotApplied => "not_applied",
            SentCreate::Unknown => "unknown",
        }
    }
}

impl Ledger {
    /// Tries to take a contact lookup key.
    pub async fn claim_contact(
        &self,
        key: &LookupKey,
        owner: Uuid,
    ) -> Result<ContactClaim, LedgerError> {
        let column = key.column();
        let acquired = self
            .on_contact(
                "INSERT INTO contacts (crm, lookup_key, lease_owner, lease_until)
                 VALUES ($1, $2, $3, now() + make_interval(secs => $4))
                 ON CONFLICT (crm, lookup_key) DO UPDATE
                    SET lease_owner = EXCLUDED.lease_owner, lease_until = EXCLUDED.lease_until
                  WHERE contacts.contact_id IS NULL
                    AND (contacts.lease_until IS NULL OR contacts.lease_until < now())
                 RETURNING pending_since",
                &column,
            )
            .bind(owner)
            .bind(self.lease_secs)
            .fetch_optional(&self.pool)
            .timed("claim_contact")
            .await?;
        if let Some(row) = acquired {
            return Ok(ContactClaim::Acquired {
                pending_since: row.try_get("pending_since")?,
            });
        }
        let known = self
            .on_contact(
                "SELECT contact_id FROM contacts WHERE crm = $1 AND lookup_key = $2",
                &column,
            )
            .fetch_optional(&self.pool)
            .timed("claim_contact")
            .await?;
        let known: Option<Option<String>> = known.map(|row| row.try_get(0)).transpose()?;
        Ok(match known.flatten() {
            Some(id) => ContactClaim::Known(ContactId(id)),
            None => ContactClaim::Busy,
        })
    }

    /// Records that a contact create is about to be sent (fenced, like
    /// [`CallLease::start_step`](super::CallLease::start_step)).
    pub async fn contact_pending(&self, key: &LookupKey, owner: Uuid) -> Result<(), LedgerError> {
        let done = self
            .on_contact(
                "UPDATE contacts SET pending_since = now(), lease_until = now() + make_interval(secs => $4)
                  WHERE crm = $1 AND lookup_key = $2 AND lease_owner = $3 AND lease_until > now()",
                &key.column(),
            )
            .bind(owner)
            .bind(self.lease_secs)
            .execute(&self.pool)
            .timed("contact_pending")
            .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(LedgerError::LeaseLost(key.to_string()))
        }
    }

    /// Extends this owner's lease on a lookup key, while it still holds it:
    /// a search waiting for the CRM's search budget keeps the caller's
    /// number, so that no other replica takes it over and searches again.
    pub async fn renew_contact(&self, key: &LookupKey, owner: Uuid) -> Result<(), LedgerError> {
        let done = self
            .on_contact(
                "UPDATE contacts SET lease_until = now() + make_interval(secs => $4)
                  WHERE crm = $1 AND lookup_key = $2 AND lease_owner = $3 AND lease_until > now()",
                &key.column(),
            )
            .bind(owner)
            .bind(self.lease_secs)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(LedgerError::LeaseLost(key.to_string()))
        }
    }

    /// Remembers the contact of a lookup key and releases the key.
    pub async fn contact_resolved(
        &self,
        key: &LookupKey,
        contact_id: &ContactId,
    ) -> Result<(), LedgerError> {
        self.on_contact(
            "INSERT INTO contacts (crm, lookup_key, contact_id) VALUES ($1, $2, $3)
             ON CONFLICT (crm, lookup_key) DO UPDATE
                SET contact_id = EXCLUDED.contact_id, pending_since = NULL,
                    lease_owner = NULL, lease_until = NULL, updated_at = now()",
            &key.column(),
        )
        .bind(contact_id.as_str())
        .execute(&self.pool)
        .timed("contact_resolved")
        .await?;
        Ok(())
    }

    /// Releases a lookup key, saying what became of the create this attempt
    /// sent, if any: one that certainly did not reach the CRM is forgotten;
    /// one whose outcome is unknown restarts the pending clock (the CRM may
    /// apply it after the client gave up, see [`CallLease::step_outcome_unknown`](super::CallLease::step_outcome_unknown)).
    pub async fn release_contact(
        &self,
        key: &LookupKey,
        owner: Uuid,
        create: SentCreate,
    ) -> Result<(), LedgerError> {
        self.on_contact(
            "UPDATE contacts SET lease_owner = NULL, lease_until = NULL,
                    pending_since = CASE $4 WHEN 'not_applied' THEN NULL
                                            WHEN 'unknown' THEN now()
                                            ELSE pending_since END
              WHERE crm = $1 AND lookup_key = $2 AND lease_owner = $3",
            &key.column(),
        )
        .bind(owner)
        .bind(create.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a remembered contact (e.g. it was deleted or merged in the CRM).
    pub async fn forget_contact(&self, contact_id: &ContactId) -> Result<(), LedgerError> {
        self.on_contact(
            "DELETE FROM contacts WHERE crm = $1 AND contact_id = $2",
            contact_id.as_str(),
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_keys_in_errors_hide_personal_data() {
        let phone = LookupKey::Phone("+31612345678".to_owned());
        let email = LookupKey::Email("jan@example.com".to_owned());
        assert_eq!(phone.to_string(), "phone:*******5678");
        assert_eq!(email.to_string(), "email:***@example.com");
        assert_eq!(format!("{phone:?}"), "LookupKey(phone:*******5678)");
    }

    #[test]
    fn lookup_keys_keep_the_text_the_contacts_table_already_holds() {
        let phone = LookupKey::Phone("+31612345678".to_owned());
        let email = LookupKey::Email("jan@example.com".to_owned());
        assert_eq!(phone.column(), "phone:+31612345678");
        assert_eq!(email.column(), "email:jan@example.com");
    }

    #[test]
    fn a_caller_is_looked_up_by_number_first_then_by_address() {
        let both = LookupKey::for_caller(Some("+31612345678"), Some("jan@example.com"));
        assert_eq!(both, Some(LookupKey::Phone("+31612345678".to_owned())));
        let email = LookupKey::for_caller(None, Some("jan@example.com"));
        assert_eq!(email, Some(LookupKey::Email("jan@example.com".to_owned())));
        assert_eq!(LookupKey::for_caller(None, None), None);
    }
}
