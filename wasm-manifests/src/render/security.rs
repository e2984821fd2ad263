//! Security around the service: mTLS STRICT for the workload, an AuthorizationPolicy that
//! admits only its own namespace (plus the listed ones and the gateway's), and JWT
//! validation when rate-limit tiers or keys come from claims. Knows Istio security kinds;
//! not the filters.

use std::collections::BTreeMap;

use meshward_core::policy::KeyPart;

use super::{Ctx, Out};
use crate::crd::istio::{
    AuthorizationPolicySpec, AuthzFrom, AuthzRule, AuthzSource, ClaimToHeader, JwtRule, Mtls,
    PeerAuthenticationSpec, RequestAuthenticationSpec,
};
use crate::crd::{LabelSelector, Object};
use crate::RenderError;

pub(super) fn render(ctx: &Ctx, out: &mut Out) -> Result<(), RenderError> {
    let dep = ctx.dep;
    let selector = LabelSelector {
        match_labels: dep.selector.clone(),
    };
    out.push(
        "security.yaml",
        Some("Only mutual-TLS traffic reaches the workload (identities are what the AuthorizationPolicy checks).".into()),
        &Object::new(
            ctx.meta(ctx.service(), "security"),
            PeerAuthenticationSpec {
                selector: selector.clone(),
                mtls: Mtls {
                    mode: "STRICT".into(),
                },
            },
        ),
    )?;

    let settings = ctx.policy.ratelimit_settings();
    let mut claims_used: Vec<String> = Vec::new();
    if let Some(KeyPart::Claim(c)) = settings.tiers.as_ref().map(|t| &t.from) {
        claims_used.push(c.clone());
    }
    for route in &ctx.policy.routes {
        for rule in route.ratelimit.iter().flat_map(|r| r.rules.iter()) {
            for k in &rule.key {
                if let KeyPart::Claim(c) = k {
                    claims_used.push(c.clone());
                }
            }
        }
    }
    claims_used.sort();
    claims_used.dedup();

    let mut claim_headers: BTreeMap<String, String> = settings
        .claim_headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(jwt) = &dep.jwt {
        for (c, h) in &jwt.claims_to_headers {
            claim_headers.insert(c.clone(), h.clone());
        }
    }
    match &dep.jwt {
        None if !claims_used.is_empty() => {
            return Err(ctx.unrenderable(
                "deployment.jwt",
                format!(
                    "the rate-limit policy reads JWT claim(s) {} from headers; without `deployment.jwt` nothing validates the token or writes those headers, so clients could choose their own tier",
                    claims_used.join(", ")
                ),
            ));
        }
        Some(jwt) if !claims_used.is_empty() && !jwt.required => {
            return Err(ctx.unrenderable(
                "deployment.jwt.required",
                "must be true when tiers or keys come from JWT claims: Istio overwrites the claim header only when a valid token carries the claim, so a request without a token could send the header itself",
            ));
        }
        _ => {}
    }
    for c in &claims_used {
        if !claim_headers.contains_key(c) {
            return Err(ctx.unrenderable(
                "ratelimit.claim_headers",
                format!("claim `{c}` is used but no header is named for it"),
            ));
        }
    }

    if let Some(jwt) = &dep.jwt {
        out.push(
            "security.yaml",
            Some("Validated claims are copied into headers with outputClaimToHeaders. The sidecar OVERWRITES any\nclient-sent header of that name when the token carries the claim, and tokenless requests are denied\nby the AuthorizationPolicy below (deployment.jwt.required), so the rate-limit filter (phase STATS,\nafter authn/authz) can trust the tier header.".into()),
            &Object::new(
                ctx.meta(ctx.service(), "security"),
                RequestAuthenticationSpec {
                    selector: selector.clone(),
                    jwt_rules: vec![JwtRule {
                        issuer: jwt.issuer.clone(),
                        jwks_uri: jwt.jwks_uri.clone(),
                        audiences: jwt.audiences.clone(),
                        forward_original_token: true,
                        output_claim_to_headers: claim_headers
                            .iter()
                            .map(|(claim, header)| ClaimToHeader {
                                header: header.clone(),
                                claim: claim.clone(),
                            })
                            .collect(),
                    }],
                },
            ),
        )?;
    }

    let mut namespaces = vec![ctx.ns().to_string()];
    namespaces.extend(dep.allowed_namespaces.iter().cloned());
    if dep.gateway.is_some() {
        namespaces.push("istio-system".to_string());
    }
    namespaces.sort();
    namespaces.dedup();
    let request_principals = match &dep.jwt {
        Some(j) if j.required => vec!["*".to_string()],
        _ => Vec::new(),
    };
    out.push(
        "security.yaml",
        Some("Namespace isolation: only workloads of these namespaces (mTLS identity) may call the service;\nwith deployment.jwt.required also only with a valid token.".into()),
        &Object::new(
            ctx.meta(ctx.service(), "security"),
            AuthorizationPolicySpec {
                selector: Some(selector),
                action: "ALLOW".into(),
                rules: vec![AuthzRule {
                    from: vec![AuthzFrom {
                        source: AuthzSource {
                            namespaces,
                            request_principals,
                        },
                    }],
                }],
            },
        ),
    )?;
    Ok(())
}
