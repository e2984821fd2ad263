//! The meshward policy file: one per service, parsed by the same code in `meshward check`,
//! in every filter (`pluginConfig`, JSON) and in the renderer. Types carry serde derives
//! with `deny_unknown_fields`; `validate` adds the checks that span fields and reports
//! every problem with its field path (and file:line:column when parsed from YAML).

mod cidr;
mod de;
#[cfg(feature = "deployment")]
pub mod deployment;
mod error;
mod json;
mod map;
mod parse;
mod ratelimit;
mod read;
mod read_types;
mod route;
mod text;
mod units;
mod validate;
#[cfg(feature = "yaml")]
mod yaml;

use serde::{Deserialize, Serialize};

pub use cidr::{canonical as canonical_ip, mask as mask_ip, Cidr};
pub use error::{PolicyError, PolicyErrors};
pub use map::Map;
pub use parse::parse_json;
#[cfg(feature = "yaml")]
pub use parse::parse_yaml;
pub use ratelimit::{
    is_header_name, Algorithm, ClientIpSettings, FailureMode, GlobalSettings, HeaderStyle,
    IpSource, KeyPart, QueueSettings, RateLimitSettings, ResponseSettings, RouteRateLimit, Rule,
    SharedSettings, TierSettings,
};
pub use route::{select, PathMatch, RequestAttrs, Route, RouteClass, RouteMatch, DEFAULT_ROUTE};
pub use units::{Duration, Rate, UnitError};

/// The only `apiVersion` this build understands.
pub const API_VERSION: &str = "meshward.io/v1alpha1";
/// The only `kind`.
pub const KIND: &str = "Policy";

/// A whole policy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Must be [`API_VERSION`].
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Must be [`KIND`].
    pub kind: String,
    /// Service name (DNS-1123 label).
    pub service: String,
    /// Routes, first match wins.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Filter-wide rate-limit settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<RateLimitSettings>,
    /// Renderer-only section.
    #[cfg(feature = "deployment")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<deployment::Deployment>,
}

/// One filter of the suite (each is its own Wasm module and `WasmPlugin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Filter {
    /// `plugins/ratelimit`.
    RateLimit,
}

impl Filter {
    /// Every filter this build knows.
    pub const ALL: &'static [Filter] = &[Filter::RateLimit];

    /// The short name (crate suffix, image name, WasmPlugin name suffix).
    pub fn name(self) -> &'static str {
        match self {
            Filter::RateLimit => "ratelimit",
        }
    }
}

impl Policy {
    /// Semantic checks across fields; every problem is reported (paths only: locations are
    /// attached by the parser that knows them).
    pub fn validate(&self) -> Result<(), PolicyErrors> {
        let problems = validate::problems(self);
        if problems.0.is_empty() {
            Ok(())
        } else {
            Err(PolicyErrors(
                problems
                    .0
                    .into_iter()
                    .map(|(path, message)| PolicyError {
                        file: String::new(),
                        line: 0,
                        column: 0,
                        path,
                        message,
                    })
                    .collect(),
            ))
        }
    }

    /// The filters this policy needs.
    pub fn filters_used(&self) -> Vec<Filter> {
        let mut out = Vec::new();
        let rl = self
            .routes
            .iter()
            .any(|r| r.ratelimit.as_ref().is_some_and(|rl| !rl.rules.is_empty()));
        if rl {
            out.push(Filter::RateLimit);
        }
        out
    }

    /// Exactly the slice of this policy that `filter` reads, as its `pluginConfig`. It is a
    /// valid policy itself: `parse_json` of it gives the same answers for that filter.
    /// Routes stay (with their match) even without rules of this filter, because first
    /// match wins: dropping one would hand its requests to a later route.
    pub fn filter_config(&self, filter: Filter) -> serde_json::Value {
        let slice = match filter {
            Filter::RateLimit => Policy {
                api_version: self.api_version.clone(),
                kind: self.kind.clone(),
                service: self.service.clone(),
                routes: self
                    .routes
                    .iter()
                    .map(|r| Route {
                        name: r.name.clone(),
                        matcher: r.matcher.clone(),
                        class: None,
                        ratelimit: r.ratelimit.clone(),
                    })
                    .collect(),
                ratelimit: self.ratelimit.clone(),
                #[cfg(feature = "deployment")]
                deployment: None,
            },
        };
        serde_json::to_value(&slice).unwrap_or(serde_json::Value::Null)
    }

    /// Rate-limit settings, defaulted when the section is absent.
    pub fn ratelimit_settings(&self) -> RateLimitSettings {
        self.ratelimit.clone().unwrap_or_default()
    }
}
