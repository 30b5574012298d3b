//! Who may call which route: the one table that decides it ([`ROUTES`]), and the guard
//! that applies it to every function's router before any handler runs.
//!
//! Each route needs either nothing (public), a signed-in caller, or a [`Permission`],
//! which `Role::allows` grants or not. The guard authenticates the caller once (the
//! handler's [`Caller`] extractor reuses it), answers 401 or 403, and records every
//! refusal in the audit log. A route missing from the table is refused with a 500, so a
//! new route cannot go out unguarded; the API-description test holds the table and the
//! routes to each other, and `README.md` prints the table ([`markdown_table`]).

use crate::caller::{Authenticator, Caller};
use crate::i18n::PreferredLang;
use crate::problem::ApiError;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::access::{Permission, Role};
use domain::modules::Module;
use std::sync::Arc;

/// What a route needs from its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: sign-up, sign-in, and the links mailed to people not signed in.
    Public,
    /// Any signed-in member, whatever their role.
    SignedIn,
    /// A role that has this permission.
    Requires(Permission),
}

impl Access {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public | Access::SignedIn => true,
            Access::Requires(permission) => role.allows(permission),
        }
    }
}

/// One route: its method, its path as the router spells it, what it needs, and the
/// module it belongs to, if any (an organization without it active gets 403
/// `module-inactive`).
#[derive(Clone, Copy, Debug)]
pub struct RouteAccess {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub module: Option<Module>,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> RouteAccess {
    RouteAccess {
        method,
        path,
        access,
        module: None,
    }
}

const fn in_module(
    module: Module,
    method: &'static str,
    path: &'static str,
    access: Access,
) -> RouteAccess {
    RouteAccess {
        method,
        path,
        access,
        module: Some(module),
    }
}

use Access::{Public, Requires, SignedIn};
use Permission::*;

/// The permission matrix: every API route, and what it needs.
pub const ROUTES: &[RouteAccess] = &[
    // Sign-up, sign-in and sessions.
    route("POST", "/auth/signup", Public),
    route("POST", "/auth/login", Public),
    route("POST", "/auth/refresh", Public),
    route("POST", "/auth/invitations/accept", Public),
    route("POST", "/auth/password-reset", Public),
    route("POST", "/auth/password-reset/confirm", Public),
    // The pending token of a password login is in the body, not a bearer: only this
    // route reads it.
    route("POST", "/auth/2fa/verify", Public),
    route("POST", "/auth/logout", SignedIn),
    route("POST", "/auth/logout-everywhere", SignedIn),
    route("GET", "/me", SignedIn),
    route("GET", "/me/export", SignedIn),
    route("PATCH", "/me", SignedIn),
    route("DELETE", "/me", SignedIn),
    route("POST", "/me/password", SignedIn),
    route("POST", "/me/2fa", SignedIn),
    route("DELETE", "/me/2fa", SignedIn),
    route("POST", "/me/2fa/confirm", SignedIn),
    // Members and the audit log.
    route("GET", "/members", Requires(ReadMembers)),
    route("POST", "/members/invitations", Requires(ManageMembers)),
    route("PATCH", "/members/{id}", Requires(ManageMembers)),
    route("DELETE", "/members/{id}", Requires(ManageMembers)),
    route("POST", "/members/{id}/erasure", Requires(ManageMembers)),
    route("GET", "/organization/settings", Requires(ReadMembers)),
    route(
        "PATCH",
        "/organization/settings",
        Requires(ManageOrganization),
    ),
    route("GET", "/organization/modules", Requires(ReadMembers)),
    route(
        "PUT",
        "/organization/modules/{module}",
        Requires(ManageModules),
    ),
    // Single sign-on. The sign-in's public routes check the module themselves, once
    // they know the organization.
    route("POST", "/auth/sso/start", Public),
    route("POST", "/auth/sso/callback", Public),
    in_module(
        Module::Sso,
        "GET",
        "/organization/sso",
        Requires(ReadMembers),
    ),
    in_module(
        Module::Sso,
        "PUT",
        "/organization/sso",
        Requires(ManageOrganization),
    ),
    in_module(
        Module::Sso,
        "DELETE",
        "/organization/sso",
        Requires(ManageOrganization),
    ),
    // The e-mail domains an organization proves it controls (DNS TXT records).
    in_module(
        Module::Sso,
        "GET",
        "/organization/sso/domains",
        Requires(ReadMembers),
    ),
    in_module(
        Module::Sso,
        "POST",
        "/organization/sso/domains",
        Requires(ManageOrganization),
    ),
    in_module(
        Module::Sso,
        "POST",
        "/organization/sso/domains/{domain}/verify",
        Requires(ManageOrganization),
    ),
    in_module(
        Module::Sso,
        "DELETE",
        "/organization/sso/domains/{domain}",
        Requires(ManageOrganization),
    ),
    route("GET", "/audit", Requires(ReadAuditLog)),
    route("GET", "/audit/export", Requires(ReadAuditLog)),
    // Contracts.
    route("GET", "/contracts", Requires(ReadContracts)),
    route("POST", "/contracts", Requires(WriteContracts)),
    route("GET", "/contracts/export", Requires(ReadContracts)),
    route("POST", "/contracts/import", Requires(WriteContracts)),
    route("POST", "/contracts/import/jobs", Requires(WriteContracts)),
    route("GET", "/contracts/{id}", Requires(ReadContracts)),
    route("PATCH", "/contracts/{id}", Requires(WriteContracts)),
    route("DELETE", "/contracts/{id}", Requires(WriteContracts)),
    route("GET", "/contracts/{id}/schedule", Requires(ReadContracts)),
    route("GET", "/jobs/{id}", Requires(WriteContracts)),
    route("POST", "/jobs/{id}/start", Requires(WriteContracts)),
    // The portfolio dashboard.
    route("GET", "/portfolio", Requires(ReadContracts)),
    route(
        "POST",
        "/portfolio/recompute",
        Requires(AdministerPortfolio),
    ),
    route("GET", "/portfolio/settings", Requires(ReadContracts)),
    route(
        "PATCH",
        "/portfolio/settings",
        Requires(AdministerPortfolio),
    ),
    // Rates.
    route("GET", "/rates", Requires(ReadRates)),
    route("POST", "/rates/refresh", Requires(RefreshRates)),
    route("GET", "/rates/{series}", Requires(ReadRates)),
    route("GET", "/rates/{series}/latest", Requires(ReadRates)),
    route("GET", "/fx/convert", Requires(ReadRates)),
];

/// What a session that may only set up a second factor can call: the profile, the
/// set-up itself, and signing out.
pub const ENROLMENT_ROUTES: &[(&str, &str)] = &[
    ("GET", "/me"),
    ("PATCH", "/me"),
    ("POST", "/me/2fa"),
    ("POST", "/me/2fa/confirm"),
    ("POST", "/auth/logout"),
    ("POST", "/auth/logout-everywhere"),
];

/// Routes outside the API that the guard does not cover: the API description, and the
/// local stand-in for presigned blob URLs (whose signature is the credential).
pub const UNGUARDED_PATHS: &[&str] = &["/openapi.json", "/blobs/{*key}"];

/// What `method` on the router path `path` needs; `None` for a route not in the table.
pub fn access_of(method: &str, path: &str) -> Option<Access> {
    route_of(method, path).map(|route| route.access)
}

/// The matrix's entry for `method` on the router path `path`.
pub fn route_of(method: &str, path: &str) -> Option<&'static RouteAccess> {
    ROUTES
        .iter()
        .find(|route| route.method == method && route.path == path)
}

/// Applies [`ROUTES`] to `router`'s routes: runs after routing, so it knows the route.
pub fn guard(router: Router, auth: Arc<Authenticator>) -> Router {
    router.route_layer(axum::middleware::from_fn_with_state(auth, enforce))
}

async fn enforce(State(auth): State<Arc<Authenticator>>, request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_default();
    let method = request.method().as_str().to_owned();
    let (access, module) = match route_of(&method, &path) {
        Some(route) => (route.access, route.module),
        // A method the route does not serve: what the router would answer, and no
        // handler the matrix does not name is ever reached.
        None if ROUTES.iter().any(|route| route.path == path) => {
            return ApiError::MethodNotAllowed(method).into_response();
        }
        None => {
            return ApiError::internal(format!(
                "{method} {path} is missing from the access matrix"
            ))
            .into_response();
        }
    };
    if access == Access::Public {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let caller = match auth.authenticate(&parts).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    let preferred = caller.language.map(PreferredLang);
    let mut response =
        if caller.enrolment_only && !ENROLMENT_ROUTES.contains(&(method.as_str(), path.as_str())) {
            ApiError::TwoFactorRequired.into_response()
        } else if !access.allows(caller.role) {
            if let Err(error) = auth
                .sessions()
                .record_denied(&caller.actor(), &method, &path)
                .await
            {
                tracing::warn!(%error, "a refused request could not be audited");
            }
            ApiError::Forbidden(caller.role).into_response()
        } else if let Some(refusal) = module_refusal(&auth, caller.tenant, module).await {
            refusal.into_response()
        } else {
            parts.extensions.insert::<Caller>(caller);
            next.run(Request::from_parts(parts, body)).await
        };
    // Problems come in the language the member chose.
    if let Some(preferred) = preferred {
        response.extensions_mut().insert(preferred);
    }
    response
}

/// Why the route's module refuses `tenant`: it is not active (or the check failed).
async fn module_refusal(
    auth: &Authenticator,
    tenant: domain::ids::TenantId,
    module: Option<Module>,
) -> Option<ApiError> {
    let module = module?;
    match auth.modules().is_active(tenant, module).await {
        Ok(true) => None,
        Ok(false) => Some(ApiError::ModuleInactive {
            module: module.to_string(),
        }),
        Err(error) => Some(error.into()),
    }
}

/// The matrix as a Markdown table, routes by roles, as `README.md` shows it.
pub fn markdown_table() -> String {
    let mut table = String::from("| route |");
    for role in Role::ALL {
        table.push_str(&format!(" {role} |"));
    }
    table.push_str("\n| --- |");
    for _ in Role::ALL {
        table.push_str(" :-: |");
    }
    table.push('\n');
    for route in ROUTES {
        table.push_str(&format!("| `{} {}`", route.method, route.path));
        if let Some(module) = route.module {
            table.push_str(&format!(" (module `{module}`)"));
        }
        table.push_str(" |");
        for role in Role::ALL {
            let cell = match route.access {
                Access::Public => "public",
                _ if route.access.allows(role) => "✓",
                _ => "–",
            };
            table.push_str(&format!(" {cell} |"));
        }
        table.push('\n');
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_appears_once() {
        let mut seen = std::collections::BTreeSet::new();
        for route in ROUTES {
            assert!(
                seen.insert((route.method, route.path)),
                "{} {} twice",
                route.method,
                route.path
            );
        }
    }

    #[test]
    fn the_auditor_reads_everything_and_changes_nothing() {
        // An import job's progress belongs to the import, a write.
        for route in ROUTES.iter().filter(|route| route.path != "/jobs/{id}") {
            if let Access::Requires(permission) = route.access {
                assert_eq!(
                    Role::Auditor.allows(permission),
                    route.method == "GET",
                    "{} {}",
                    route.method,
                    route.path
                );
            }
        }
    }

    #[test]
    fn the_readme_prints_the_matrix() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&markdown_table()),
            "README.md must contain the access matrix as `api::access::markdown_table()` prints it:\n{}",
            markdown_table()
        );
    }
}
