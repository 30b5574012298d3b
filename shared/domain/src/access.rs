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
    /// Reads everything, the audit log included; changes nothing.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Editor,
        Role::Viewer,
        Role::Auditor,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }

    /// The permission matrix: every route and service check asks this one function.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match permission {
            ReadProfile | ReadContracts | ReadRates | ReadMembers => true,
            WriteContracts => matches!(self, Role::Owner | Role::Admin | Role::Editor),
            ReadAuditLog => matches!(self, Role::Owner | Role::Admin | Role::Auditor),
            RefreshRates | AdministerPortfolio | ManageMembers | ManageOrganization => {
                matches!(self, Role::Owner | Role::Admin)
            }
            ManageModules => self == Role::Owner,
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
    /// Who belongs to the organization, and their roles.
    ReadMembers,
    /// Inviting members, changing their roles, removing them (only owners touch owners).
    ManageMembers,
    /// The audit log and its export.
    ReadAuditLog,
    /// Organization-wide settings, such as requiring a second factor of every member.
    ManageOrganization,
    /// Turning modules on and off (they are billed after their trial): owners only.
    ManageModules,
}

impl Permission {
    pub const ALL: [Permission; 11] = [
        Permission::ReadProfile,
        Permission::ReadContracts,
        Permission::WriteContracts,
        Permission::ReadRates,
        Permission::RefreshRates,
        Permission::AdministerPortfolio,
        Permission::ReadMembers,
        Permission::ManageMembers,
        Permission::ReadAuditLog,
        Permission::ManageOrganization,
        Permission::ManageModules,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ReadProfile => "readProfile",
            Permission::ReadContracts => "readContracts",
            Permission::WriteContracts => "writeContracts",
            Permission::ReadRates => "readRates",
            Permission::RefreshRates => "refreshRates",
            Permission::AdministerPortfolio => "administerPortfolio",
            Permission::ReadMembers => "readMembers",
            Permission::ManageMembers => "manageMembers",
            Permission::ReadAuditLog => "readAuditLog",
            Permission::ManageOrganization => "manageOrganization",
            Permission::ManageModules => "manageModules",
        }
    }
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
                matches!(role, Role::Owner | Role::Admin | Role::Editor)
            );
            // The auditor reads everything and changes nothing.
            if role == Role::Auditor {
                for permission in Permission::ALL {
                    let reads = matches!(
                        permission,
                        Permission::ReadProfile
                            | Permission::ReadContracts
                            | Permission::ReadRates
                            | Permission::ReadMembers
                            | Permission::ReadAuditLog
                    );
                    assert_eq!(role.allows(permission), reads, "{}", permission.as_str());
                }
            }
            assert_eq!(role.as_str().parse(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
