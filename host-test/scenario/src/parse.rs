//! Reading a scenario: YAML text -> [`Scenario`], then the checks serde cannot make, each
//! error with file:line:col. Knows nothing of plugins beyond their file names.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use crate::error::ScenarioError;
use crate::locate::Locations;
use crate::model::{ClusterKind, Latency, Scenario, Template};
use crate::traffic::ClientPool;

/// Placeholders a template string may use.
pub const PLACEHOLDERS: [&str; 4] = ["client", "ip", "seq", "phase"];

/// Parses and checks a scenario file.
pub fn load_file(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        position: None,
        path: String::new(),
        message: format!("cannot read the scenario: {e}"),
    })?;
    parse(&text, &file)
}

/// Parses and checks scenario text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let position = inner.location().map(|l| crate::locate::Position {
            line: l.line(),
            col: l.column(),
        });
        ScenarioError {
            file: file.to_string(),
            position,
            path: if path == "." || path.ends_with('?') {
                String::new()
            } else {
                path.clone()
            },
            message: hint(clean_message(&inner.to_string(), &path), text),
        }
    })?;
    let locations = Locations::index(text);
    check(&scenario).map_err(|(path, message)| {
        let parts: Vec<&str> = path.iter().map(String::as_str).collect();
        ScenarioError {
            file: file.to_string(),
            position: locations.find(&parts),
            path: display_path(&path),
            message,
        }
    })?;
    Ok(scenario)
}

/// serde_yaml appends " at line L column C" and prefixes the path; both are shown by us.
fn clean_message(msg: &str, path: &str) -> String {
    // Drop serde_yaml's own " at line L column C" (the position is shown in front).
    let mut msg = msg.to_string();
    if let Some(i) = msg.find(" at line ") {
        let rest = &msg[i + " at line ".len()..];
        let skip = rest
            .find(" column ")
            .map(|c| c + " column ".len())
            .map(|c| {
                c + rest[c..]
                    .find(|ch: char| !ch.is_ascii_digit())
                    .unwrap_or(rest.len() - c)
            })
            .unwrap_or(0);
        msg = format!("{}{}", &msg[..i], &rest[skip..]);
    }
    // serde_yaml names the parent path itself; ours (from serde_path_to_error) is shown.
    match msg.split_once(": ") {
        Some((head, rest)) if !head.contains(' ') && path.starts_with(head) => rest.to_string(),
        _ => msg,
    }
}

/// A common slip: `{{client}}` unquoted inside a `{...}` flow mapping.
fn hint(message: String, text: &str) -> String {
    if message.contains("flow mapping") && text.contains("{{") {
        format!("{message} (quote values that use `{{{{...}}}}` placeholders)")
    } else {
        message
    }
}

fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

type Check = Result<(), (Vec<String>, String)>;

fn at<const N: usize>(parts: [&str; N], message: impl Into<String>) -> (Vec<String>, String) {
    (
        parts.iter().map(|s| s.to_string()).collect(),
        message.into(),
    )
}

fn check(s: &Scenario) -> Check {
    if let Some(w) = s.workers {
        if !(1..=64).contains(&w) {
            return Err(at(["workers"], format!("must be from 1 to 64, got {w}")));
        }
    }
    for (i, p) in s.plugins.iter().enumerate() {
        let i = i.to_string();
        match (&p.path, &p.module) {
            (Some(_), Some(_)) => {
                return Err(at(
                    ["plugins", &i, "module"],
                    "give either `path` or `module`, not both",
                ))
            }
            (None, None) => {
                return Err(at(
                    ["plugins", &i],
                    "a plugin needs `path` (a .wasm file) or `module` (a built-in module)",
                ))
            }
            _ => {}
        }
        if p.config.is_some() && p.config_file.is_some() {
            return Err(at(
                ["plugins", &i, "config_file"],
                "give either `config` or `config_file`, not both",
            ));
        }
    }
    for (name, c) in &s.clusters {
        check_latency(&c.latency).map_err(|m| at(["clusters", name, "latency"], m))?;
        match c.kind {
            ClusterKind::Http if c.grpc_status.is_some() => {
                return Err(at(
                    ["clusters", name, "grpc_status"],
                    "`grpc_status` is for `kind: grpc` clusters; use `status`",
                ))
            }
            ClusterKind::Grpc if c.status.is_some() => {
                return Err(at(
                    ["clusters", name, "status"],
                    "`status` is for `kind: http` clusters; use `grpc_status`",
                ))
            }
            _ => {}
        }
        if let Some(st) = c.status {
            check_status(st).map_err(|m| at(["clusters", name, "status"], m))?;
        }
    }
    let up = &s.upstream;
    if up.status.is_empty() {
        return Err(at(
            ["upstream", "status"],
            "needs at least one status, like `{200: 100%}`",
        ));
    }
    for st in up.status.keys() {
        check_status(*st).map_err(|m| at(["upstream", "status", &st.to_string()], m))?;
    }
    let total: f64 = up.status.values().map(|p| p.value()).sum();
    if (total - 100.0).abs() > 1e-6 {
        return Err(at(
            ["upstream", "status"],
            format!("the status mix adds up to {total}%, not 100%"),
        ));
    }
    check_latency(&up.latency).map_err(|m| at(["upstream", "latency"], m))?;
    if up.failures.connect.value() + up.failures.reset.value() > 100.0 {
        return Err(at(
            ["upstream", "failures"],
            "connect + reset is more than 100%",
        ));
    }
    if s.request_templates.is_empty() {
        return Err(at(["request_templates"], "needs at least one template"));
    }
    for (name, t) in &s.request_templates {
        check_template(name, t)?;
    }
    if s.phases.is_empty() {
        return Err(at(["phases"], "needs at least one phase"));
    }
    let mut seen = BTreeSet::new();
    for (i, ph) in s.phases.iter().enumerate() {
        let i = i.to_string();
        if ph.name.trim().is_empty() {
            return Err(at(["phases", &i, "name"], "must not be empty"));
        }
        if !seen.insert(ph.name.as_str()) {
            return Err(at(
                ["phases", &i, "name"],
                format!("phase `{}` is named twice", ph.name),
            ));
        }
        if ph.duration.get().is_zero() {
            return Err(at(["phases", &i, "duration"], "must be more than zero"));
        }
        if ph.rate.per_second() * ph.duration.get().as_secs_f64() > 10_000_000.0 {
            return Err(at(
                ["phases", &i, "rate"],
                "more than 10 million requests in one phase; shorten it or lower the rate",
            ));
        }
        for (t, w) in &ph.templates {
            if !s.request_templates.contains_key(t) {
                let known: Vec<&str> = s.request_templates.keys().map(String::as_str).collect();
                return Err(at(
                    ["phases", &i, "templates", t],
                    format!("unknown template `{t}` (known: {})", known.join(", ")),
                ));
            }
            let _ = w;
        }
        if !ph.templates.is_empty() && ph.templates.values().all(|w| *w == 0) {
            return Err(at(["phases", &i, "templates"], "every weight is 0"));
        }
    }
    Ok(())
}

fn check_status(st: u16) -> Result<(), String> {
    if (100..=599).contains(&st) {
        Ok(())
    } else {
        Err(format!("{st} is not an HTTP status (100-599)"))
    }
}

fn check_latency(l: &Latency) -> Result<(), String> {
    match *l {
        Latency::Uniform { min, max } if min > max => {
            Err(format!("min ({min}) is more than max ({max})"))
        }
        Latency::Lognormal { sigma, .. } if !(sigma.is_finite() && sigma >= 0.0) => {
            Err(format!("sigma must be a number >= 0, got {sigma}"))
        }
        _ => Ok(()),
    }
}

fn check_template(name: &str, t: &Template) -> Check {
    let base = |f: &str| -> Vec<String> { vec!["request_templates".into(), name.into(), f.into()] };
    if t.method.trim().is_empty() || t.method.contains(char::is_whitespace) {
        return Err((
            base("method"),
            format!("`{}` is not an HTTP method", t.method),
        ));
    }
    check_placeholders(&t.path).map_err(|m| (base("path"), m))?;
    if !t.path.starts_with('/') && !t.path.starts_with("{{") {
        return Err((base("path"), "must start with `/`".into()));
    }
    check_placeholders(&t.authority).map_err(|m| (base("authority"), m))?;
    for (k, v) in &t.headers {
        let mut p = base("headers");
        p.push(k.clone());
        if k.is_empty() || k.starts_with(':') || k.chars().any(|c| c.is_whitespace() || c == ':') {
            return Err((p, format!("`{k}` is not a header name (pseudo-headers come from method/path/authority/scheme)")));
        }
        check_placeholders(v).map_err(|m| (p, m))?;
    }
    if t.destination.parse::<std::net::SocketAddr>().is_err() {
        return Err((
            base("destination"),
            format!(
                "`{}` is not an address with a port, like `10.0.0.2:8080`",
                t.destination
            ),
        ));
    }
    ClientPool::new(&t.clients).map_err(|(field, m)| (base_clients(name, field), m))?;
    Ok(())
}

fn base_clients(name: &str, field: &str) -> Vec<String> {
    vec![
        "request_templates".into(),
        name.into(),
        "clients".into(),
        field.into(),
    ]
}

/// Fails on `{{x}}` where x is not a known placeholder, or an unclosed `{{`.
pub fn check_placeholders(s: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("unclosed `{{{{` in `{s}`"))?;
        let name = after[..close].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{{{name}}}}}` (known: {})",
                PLACEHOLDERS.map(|p| format!("{{{{{p}}}}}")).join(", ")
            ));
        }
        rest = &after[close + 2..];
    }
    Ok(())
}

/// Parses an address, accepting `a.b.c.d` and IPv6 forms.
pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim().parse().ok()
}
