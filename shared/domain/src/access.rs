//! Roles and the one permission matrix that decides what each role may do.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Created the organization; everything.
    Owner,
    /// Runs the organization's account; everything.
    Admin,
    /// Reads and writes contracts.
    Editor,
    /// Reads only.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Editor, Role::Viewer];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match permission {
            ReadProfile | ReadContracts | ReadRates => true,
            WriteContracts => matches!(self, Role::Owner | Role::Admin | Role::Editor),
            RefreshRates | AdministerPortfolio | ReadAuditLog => {
                matches!(self, Role::Owner | Role::Admin)
            }
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or(UnknownRole)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown role")]
pub struct UnknownRole;

/// Something a route lets a caller do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    ReadProfile,
    ReadContracts,
    WriteContracts,
    /// The rates catalogue, observations and conversions (public data).
    ReadRates,
    /// Polling the rate sources now, outside the schedule.
    RefreshRates,
    /// The dashboard's settings, and rebuilding its figures.
    AdministerPortfolio,
    /// The organization's audit trail: reading and exporting it.
    ReadAuditLog,
}

impl Permission {
    pub const ALL: [Permission; 7] = [
        Permission::ReadProfile,
        Permission::ReadContracts,
        Permission::WriteContracts,
        Permission::ReadRates,
        Permission::RefreshRates,
        Permission::AdministerPortfolio,
        Permission::ReadAuditLog,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix() {
        for role in Role::ALL {
            assert!(role.allows(Permission::ReadProfile));
            assert!(role.allows(Permission::ReadContracts));
            assert_eq!(
                role.allows(Permission::WriteContracts),
                role != Role::Viewer
            );
            assert_eq!(role.as_str().parse(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
