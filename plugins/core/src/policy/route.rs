//! Routes of a policy and how a request picks one: first match wins, a route without
//! `match` (only allowed for the route named `default`) matches everything. Path matching
//! is exact, prefix (segment-aware) or template (`/users/{id}`); methods, host and exact
//! header values narrow it. Knows nothing of proxy-wasm: the caller hands in the request
//! attributes through [`RequestAttrs`].

use serde::{Deserialize, Serialize};

use super::map::Map;
use super::ratelimit::RouteRateLimit;

/// The name of the catch-all route.
pub const DEFAULT_ROUTE: &str = "default";

/// One route of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique name (DNS-1123 label); used in metrics, keys and headers.
    pub name: String,
    /// What requests this route takes. Required except on the route named `default`.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<RouteMatch>,
    /// Route class for degradation and retries (filters other than ratelimit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<RouteClass>,
    /// Rate limits of this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<RouteRateLimit>,
}

/// How much a route matters when the service is under pressure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteClass {
    /// Keep serving as long as anything is served.
    Critical,
    /// The usual class.
    Standard,
    /// Shed first.
    Optional,
}

/// Conditions a request must meet, all of them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Path condition (query string ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Allowed methods (upper case); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// `:authority` without port, case-insensitive; `*.example.com` matches subdomains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Exact header values (names lower-case).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub headers: Map<String>,
}

/// A path condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum PathMatch {
    /// The whole path.
    Exact(String),
    /// `/api` matches `/api` and `/api/...` but not `/apix` (a trailing `/` in the prefix
    /// makes it a plain string prefix).
    Prefix(String),
    /// Segments; `{name}` matches exactly one non-empty segment: `/users/{id}/orders`.
    Template(String),
}

/// What route matching needs to know about a request.
pub trait RequestAttrs {
    /// `:method`.
    fn method(&self) -> &str;
    /// `:path` (may carry a query string).
    fn path(&self) -> &str;
    /// `:authority` (may carry a port).
    fn host(&self) -> &str;
    /// First value of a request header (lower-case name).
    fn header(&self, name: &str) -> Option<&str>;
}

impl PathMatch {
    /// True when `path` (query already stripped) satisfies this condition.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => {
                if p.ends_with('/') {
                    path.starts_with(p.as_str())
                } else {
                    path.strip_prefix(p.as_str())
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                }
            }
            PathMatch::Template(t) => {
                let mut want = t.split('/');
                let mut have = path.split('/');
                loop {
                    match (want.next(), have.next()) {
                        (None, None) => return true,
                        (Some(w), Some(h)) => {
                            let is_var = w.starts_with('{') && w.ends_with('}');
                            if is_var {
                                if h.is_empty() {
                                    return false;
                                }
                            } else if w != h {
                                return false;
                            }
                        }
                        _ => return false,
                    }
                }
            }
        }
    }

    /// The pattern text.
    pub fn pattern(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::Template(p) => p,
        }
    }
}

fn host_matches(pattern: &str, authority: &str) -> bool {
    // Strip a port, but not from a bracketed IPv6 literal's inside.
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .len()
            .checked_sub(suffix.len() + 1)
            .and_then(|i| host.get(i..))
            .is_some_and(|tail| {
                tail.len() == suffix.len() + 1
                    && tail.starts_with('.')
                    && tail
                        .get(1..)
                        .is_some_and(|t| t.eq_ignore_ascii_case(suffix))
            }),
        None => host.eq_ignore_ascii_case(pattern),
    }
}

impl RouteMatch {
    /// True when the request meets every condition.
    pub fn matches(&self, req: &dyn RequestAttrs) -> bool {
        if let Some(p) = &self.path {
            let path = req.path();
            let path = path.split(['?', '#']).next().unwrap_or(path);
            if !p.matches(path) {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method()) {
            return false;
        }
        if let Some(h) = &self.host {
            if !host_matches(h, req.host()) {
                return false;
            }
        }
        self.headers
            .iter()
            .all(|(k, v)| req.header(k) == Some(v.as_str()))
    }
}

impl Route {
    /// True when the request belongs to this route (no `match` = everything).
    pub fn matches(&self, req: &dyn RequestAttrs) -> bool {
        self.matcher.as_ref().is_none_or(|m| m.matches(req))
    }
}

/// The first route that takes the request, with its index.
pub fn select<'a>(routes: &'a [Route], req: &dyn RequestAttrs) -> Option<(usize, &'a Route)> {
    routes.iter().enumerate().find(|(_, r)| r.matches(req))
}

#[cfg(test)]
#[path = "route_test.rs"]
mod tests;
