//! Identifiers. All are UUID v7, so they sort by creation time, and parse strictly.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered identifier.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // Only the canonical hyphenated lower-case form, so an id has one spelling
                // and keys built from it are unique.
                let uuid = Uuid::try_parse(s).map_err(|_| InvalidId)?;
                if uuid.hyphenated().to_string() != s {
                    return Err(InvalidId);
                }
                Ok(Self(uuid))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }
    };
}

uuid_id!(
    /// An organization: the tenant every business record belongs to.
    TenantId
);
uuid_id!(
    /// A user of an organization.
    UserId
);
uuid_id!(
    /// A leasing or credit contract.
    ContractId
);
uuid_id!(
    /// An audit event.
    AuditEventId
);
uuid_id!(
    /// A background job (a large import).
    JobId
);
uuid_id!(
    /// A sign-in session: one device's chain of refresh tokens.
    SessionId
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid identifier")]
pub struct InvalidId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_other_spellings() {
        let id = ContractId::generate();
        assert_eq!(id.to_string().parse::<ContractId>(), Ok(id));
        assert!(id.to_string().to_uppercase().parse::<ContractId>().is_err());
        assert!(id.simple_form().parse::<ContractId>().is_err());
        assert!("not-an-id".parse::<ContractId>().is_err());
    }

    #[test]
    fn ids_sort_by_creation() {
        let first = ContractId::generate();
        let second = ContractId::generate();
        assert!(first.to_string() < second.to_string());
    }

    impl ContractId {
        fn simple_form(&self) -> String {
            self.0.simple().to_string()
        }
    }
}
