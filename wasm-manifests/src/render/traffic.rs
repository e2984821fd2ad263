//! Envoy's own resilience for the service: a VirtualService (routes mirroring the policy's,
//! timeouts, retries with exponential backoff by route class), a DestinationRule (connection
//! pool limits, outlier detection) and, when asked, an ingress Gateway with TLS 1.2-1.3.
//! Knows Istio's routing vocabulary; not the filters.

use meshward_core::policy::{PathMatch, Route};

use super::{Ctx, Out};
use crate::crd::istio::{
    ConnectionPool, Destination, DestinationRuleSpec, GatewaySpec, HttpMatchRequest, HttpRetry,
    HttpRoute, HttpRouteDestination, HttpSettings, OutlierDetection, PortSelector, Server,
    ServerPort, ServerTls, StringMatch, TcpSettings, TrafficPolicy, VirtualServiceSpec,
};
use crate::crd::Object;
use crate::RenderError;

/// Methods a retry cannot duplicate a side effect of (RFC 9110 §9.2.2).
const IDEMPOTENT: &[&str] = &["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"];

/// Base interval of Envoy's retry backoff. Envoy backs off exponentially with full jitter
/// from this base, capped at 10x (25ms, 50ms, 100ms, ... 250ms).
const RETRY_BACKOFF: &str = "25ms";

pub(super) fn render(ctx: &Ctx, out: &mut Out) -> Result<(), RenderError> {
    let dep = ctx.dep;
    let host = ctx.host();
    let gateway_name = format!("{}-gateway", ctx.service());
    let mut hosts = vec![host.clone()];
    let mut gateways = Vec::new();
    if let Some(g) = &dep.gateway {
        hosts.extend(g.hosts.iter().cloned());
        gateways.push("mesh".to_string());
        gateways.push(gateway_name.clone());
    }
    let mut http = Vec::new();
    for route in &ctx.policy.routes {
        http.push(http_route(ctx, route, &host));
    }
    if !ctx.policy.routes.iter().any(|r| r.matcher.is_none()) {
        // The policy's routes all match something; Istio needs a catch-all or unmatched
        // requests get 404 from the sidecar.
        http.push(HttpRoute {
            name: "meshward-catch-all".into(),
            matches: Vec::new(),
            route: vec![destination(ctx, &host)],
            timeout: dep.traffic.timeout.to_istio(),
            retries: retries(ctx, "standard", false),
        });
    }
    out.push(
        "traffic.yaml",
        Some("Routes mirror the policy's (first match wins); timeouts and retries per route class.\nRetries: only idempotent routes retry upstream 5xx/resets; other routes retry only failures\nwhere the request never reached the upstream (connect-failure, refused-stream).".into()),
        &Object::new(
            ctx.meta(ctx.service(), "traffic"),
            VirtualServiceSpec { hosts, gateways, http },
        ),
    )?;
    let t = &dep.traffic;
    out.push(
        "traffic.yaml",
        None,
        &Object::new(
            ctx.meta(ctx.service(), "traffic"),
            DestinationRuleSpec {
                host,
                traffic_policy: TrafficPolicy {
                    connection_pool: ConnectionPool {
                        tcp: TcpSettings {
                            max_connections: t.max_connections,
                            connect_timeout: "2s".into(),
                        },
                        http: HttpSettings {
                            http1_max_pending_requests: t.max_pending_requests,
                            http2_max_requests: t.max_connections,
                            // At most 1 in 10 connections' worth of requests may be retries,
                            // so retries cannot multiply an overload.
                            max_retries: (t.max_connections / 10).max(3),
                            idle_timeout: "60s".into(),
                        },
                    },
                    outlier_detection: OutlierDetection {
                        consecutive5xx_errors: t.consecutive_5xx,
                        interval: "10s".into(),
                        base_ejection_time: "30s".into(),
                        max_ejection_percent: t.max_ejection.0.round() as u32,
                    },
                },
            },
        ),
    )?;
    if let Some(g) = &dep.gateway {
        let servers = vec![
            Server {
                port: ServerPort {
                    number: 443,
                    name: "https".into(),
                    protocol: "HTTPS".into(),
                },
                hosts: g.hosts.clone(),
                tls: Some(ServerTls {
                    mode: Some("SIMPLE".into()),
                    https_redirect: None,
                    credential_name: Some(g.tls_secret.clone()),
                    min_protocol_version: Some("TLSV1_2".into()),
                    max_protocol_version: Some("TLSV1_3".into()),
                }),
            },
            Server {
                port: ServerPort {
                    number: 80,
                    name: "http".into(),
                    protocol: "HTTP".into(),
                },
                hosts: g.hosts.clone(),
                tls: Some(ServerTls {
                    mode: None,
                    https_redirect: Some(true),
                    credential_name: None,
                    min_protocol_version: None,
                    max_protocol_version: None,
                }),
            },
        ];
        out.push(
            "traffic.yaml",
            Some(format!(
                "TLS 1.2-1.3 termination; plain HTTP redirects to HTTPS. The Secret `{}` (kubernetes.io/tls)\nmust live in the namespace of the gateway pods.",
                g.tls_secret
            )),
            &Object::new(
                ctx.meta(&gateway_name, "traffic"),
                GatewaySpec {
                    selector: g.selector.clone(),
                    servers,
                },
            ),
        )?;
    }
    Ok(())
}

fn destination(ctx: &Ctx, host: &str) -> HttpRouteDestination {
    HttpRouteDestination {
        destination: Destination {
            host: host.to_string(),
            port: PortSelector {
                number: u32::from(ctx.dep.ports.http),
            },
        },
    }
}

fn class_name(route: &Route) -> String {
    route
        .class
        .and_then(|c| serde_json::to_value(c).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "standard".to_string())
}

fn http_route(ctx: &Ctx, route: &Route, host: &str) -> HttpRoute {
    let class = class_name(route);
    let mut matches = Vec::new();
    let mut idempotent = false;
    if let Some(m) = &route.matcher {
        let mut req = HttpMatchRequest {
            name: Some(route.name.clone()),
            ..HttpMatchRequest::default()
        };
        req.uri = m.path.as_ref().map(|p| match p {
            PathMatch::Exact(s) => StringMatch::Exact(s.clone()),
            PathMatch::Prefix(s) if s.ends_with('/') => StringMatch::Prefix(s.clone()),
            // Segment-aware like the filter: `/api` takes `/api` and `/api/...`, not `/apix`.
            PathMatch::Prefix(s) => StringMatch::Regex(format!("{}(/.*)?", re_escape(s))),
            PathMatch::Template(s) => StringMatch::Regex(template_regex(s)),
        });
        if !m.methods.is_empty() {
            idempotent = m
                .methods
                .iter()
                .all(|x| IDEMPOTENT.contains(&x.to_ascii_uppercase().as_str()));
            req.method = Some(if m.methods.len() == 1 {
                StringMatch::Exact(m.methods[0].to_ascii_uppercase())
            } else {
                StringMatch::Regex(
                    m.methods
                        .iter()
                        .map(|x| re_escape(&x.to_ascii_uppercase()))
                        .collect::<Vec<_>>()
                        .join("|"),
                )
            });
        }
        if let Some(h) = &m.host {
            let h = h.to_ascii_lowercase();
            let base = match h.strip_prefix("*.") {
                // Any depth of subdomain, like the filter's suffix match.
                Some(rest) => format!(".+\\.{}", re_escape(rest)),
                None => re_escape(&h),
            };
            // Case-insensitive, optional port: the filter compares the host the same way.
            req.authority = Some(StringMatch::Regex(format!("(?i){base}(:[0-9]+)?")));
        }
        for (k, v) in &m.headers {
            req.headers
                .insert(k.to_ascii_lowercase(), StringMatch::Exact(v.clone()));
        }
        matches.push(req);
    }
    let timeout = ctx
        .dep
        .traffic
        .class_timeouts
        .get(&class)
        .copied()
        .unwrap_or(ctx.dep.traffic.timeout);
    HttpRoute {
        name: route.name.clone(),
        matches,
        route: vec![destination(ctx, host)],
        timeout: timeout.to_istio(),
        retries: retries(ctx, &class, idempotent),
    }
}

/// Retry policy by route class: `optional` routes (shed first) never retry, so retries do
/// not add load where the service gives up first; `critical` and `standard` retry
/// `retry_attempts` times.
fn retries(ctx: &Ctx, class: &str, idempotent: bool) -> HttpRetry {
    let t = &ctx.dep.traffic;
    let attempts = if class == "optional" {
        0
    } else {
        t.retry_attempts
    };
    if attempts == 0 {
        return HttpRetry {
            attempts: 0,
            per_try_timeout: None,
            retry_on: None,
            backoff: None,
        };
    }
    let retry_on = if idempotent {
        "connect-failure,refused-stream,reset,gateway-error"
    } else {
        "connect-failure,refused-stream"
    };
    HttpRetry {
        attempts,
        per_try_timeout: Some(t.per_try_timeout.to_istio()),
        retry_on: Some(retry_on.to_string()),
        backoff: Some(RETRY_BACKOFF.to_string()),
    }
}

/// RE2 literal.
fn re_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if "\\.+*?()|[]{}^$".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// `/users/{id}/orders` -> `/users/[^/]+/orders`.
fn template_regex(t: &str) -> String {
    t.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "[^/]+".to_string()
            } else {
                re_escape(seg)
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_literals_become_re2() {
        assert_eq!(template_regex("/users/{id}/orders"), "/users/[^/]+/orders");
        assert_eq!(re_escape("/a.b+c"), "/a\\.b\\+c");
    }
}
