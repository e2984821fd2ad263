//! The traffic of a scenario: requests spread over virtual time at each phase's rate, each
//! from a template with per-client variation, and what the upstream answers to a forwarded
//! request. Deterministic for a seed. Knows nothing of hosts or plugins.

use std::net::IpAddr;
use std::time::Duration;

use crate::dist::Draw;
use crate::model::{Arrival, Clients, Scenario, Upstream};

/// One request of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Number in the run, from 0.
    pub seq: u64,
    /// Index of the phase it arrives in.
    pub phase: usize,
    /// Arrival, from the start of the run.
    pub at: Duration,
    /// Template name.
    pub template: String,
    /// Client number in its template's pool.
    pub client: u64,
    /// `source.address` (`ip:port`).
    pub source: String,
    /// `destination.address`.
    pub destination: String,
    /// Request headers, pseudo-headers first.
    pub headers: Vec<(String, String)>,
    /// Body size (0: none).
    pub body_bytes: usize,
}

/// A template's client addresses: a CIDR block's first `count` addresses, or a list.
#[derive(Clone, Debug)]
pub struct ClientPool {
    list: Vec<IpAddr>,
    base: u128,
    v6: bool,
    count: u64,
}

impl ClientPool {
    /// Builds the pool; errors name the field (`cidr`, `count`, `list`) and the problem.
    pub fn new(c: &Clients) -> Result<Self, (&'static str, String)> {
        match (&c.cidr, c.list.is_empty()) {
            (Some(_), false) => Err(("list", "give either `cidr` or `list`, not both".into())),
            (Some(cidr), true) => {
                let (addr, len) = cidr.split_once('/').ok_or_else(|| {
                    (
                        "cidr",
                        format!("`{cidr}` is not a CIDR block like `10.1.0.0/24`"),
                    )
                })?;
                let ip = crate::parse::parse_ip(addr)
                    .ok_or_else(|| ("cidr", format!("`{addr}` is not an IP address")))?;
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                let len: u32 = len
                    .trim()
                    .parse()
                    .ok()
                    .filter(|l| *l <= bits)
                    .ok_or_else(|| {
                        (
                            "cidr",
                            format!("`/{len}` is not a prefix length (0-{bits})"),
                        )
                    })?;
                let size = 1u128.checked_shl(bits - len).unwrap_or(u128::MAX);
                let count = c.count.unwrap_or(1);
                if count == 0 {
                    return Err(("count", "must be at least 1".into()));
                }
                if u128::from(count) > size {
                    return Err((
                        "count",
                        format!("{count} clients do not fit in `{cidr}` ({size} addresses)"),
                    ));
                }
                let raw = match ip {
                    IpAddr::V4(v) => u128::from(u32::from(v)),
                    IpAddr::V6(v) => u128::from(v),
                };
                let mask = if bits - len >= 128 {
                    0
                } else {
                    !((1u128 << (bits - len)) - 1)
                };
                Ok(ClientPool {
                    list: Vec::new(),
                    base: raw & mask,
                    v6: ip.is_ipv6(),
                    count: u64::from(count),
                })
            }
            (None, _) => {
                if c.count.is_some() {
                    return Err(("count", "`count` goes with `cidr`".into()));
                }
                if c.list.is_empty() {
                    return Err(("list", "needs at least one address".into()));
                }
                let list = c
                    .list
                    .iter()
                    .map(|a| {
                        crate::parse::parse_ip(a)
                            .ok_or_else(|| ("list", format!("`{a}` is not an IP address")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let count = list.len() as u64;
                Ok(ClientPool {
                    list,
                    base: 0,
                    v6: false,
                    count,
                })
            }
        }
    }

    /// Number of clients.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Never empty once built.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Address of client `i` (0-based, `i < len()`).
    pub fn address(&self, i: u64) -> IpAddr {
        if let Some(a) = self.list.get(i as usize) {
            return *a;
        }
        let raw = self.base.wrapping_add(u128::from(i));
        if self.v6 {
            IpAddr::V6(raw.into())
        } else {
            IpAddr::V4((raw as u32).into())
        }
    }
}

/// Replaces the placeholders of a template string.
pub fn render(s: &str, client: u64, ip: &IpAddr, seq: u64, phase: &str) -> String {
    if !s.contains("{{") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        match after[..close].trim() {
            "client" => out.push_str(&client.to_string()),
            "ip" => out.push_str(&ip.to_string()),
            "seq" => out.push_str(&seq.to_string()),
            "phase" => out.push_str(phase),
            other => {
                out.push_str("{{");
                out.push_str(other);
                out.push_str("}}");
            }
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// Arrival times of a phase, relative to its start.
fn arrivals(rate: f64, duration: Duration, arrival: Arrival, draw: &mut Draw) -> Vec<Duration> {
    let mut out = Vec::new();
    if rate <= 0.0 {
        return out;
    }
    let end = duration.as_secs_f64();
    match arrival {
        Arrival::Even => {
            let mut k = 0u64;
            loop {
                let t = k as f64 / rate;
                if t >= end {
                    break;
                }
                out.push(Duration::from_secs_f64(t));
                k += 1;
            }
        }
        Arrival::Poisson => {
            let mut t = draw.exponential(rate);
            while t < end {
                out.push(Duration::from_secs_f64(t));
                t += draw.exponential(rate);
            }
        }
    }
    out
}

/// Generates the requests of a scenario in arrival order, phase by phase.
#[derive(Debug)]
pub struct Traffic<'a> {
    scenario: &'a Scenario,
    pools: Vec<(String, ClientPool)>,
    draw: Draw,
    phase: usize,
    phase_start: Duration,
    pending: std::collections::VecDeque<Duration>,
    seq: u64,
}

impl<'a> Traffic<'a> {
    /// The traffic of a checked scenario (see [`crate::parse`]).
    pub fn new(scenario: &'a Scenario) -> Result<Self, String> {
        let pools = scenario
            .request_templates
            .iter()
            .map(|(name, t)| {
                ClientPool::new(&t.clients)
                    .map(|p| (name.clone(), p))
                    .map_err(|(f, m)| format!("request_templates.{name}.clients.{f}: {m}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut t = Traffic {
            scenario,
            pools,
            draw: Draw::new(scenario.seed, 1),
            phase: 0,
            phase_start: Duration::ZERO,
            pending: Default::default(),
            seq: 0,
        };
        t.fill_phase();
        Ok(t)
    }

    fn fill_phase(&mut self) {
        while let Some(ph) = self.scenario.phases.get(self.phase) {
            let times = arrivals(
                ph.rate.per_second(),
                ph.duration.get(),
                ph.arrival,
                &mut self.draw,
            );
            if !times.is_empty() {
                self.pending = times.into();
                return;
            }
            self.phase_start += ph.duration.get();
            self.phase += 1;
        }
    }

    /// Start offsets of every phase, and the end of the last one.
    pub fn phase_bounds(scenario: &Scenario) -> Vec<(Duration, Duration)> {
        let mut start = Duration::ZERO;
        scenario
            .phases
            .iter()
            .map(|p| {
                let b = (start, start + p.duration.get());
                start = b.1;
                b
            })
            .collect()
    }
}

impl Iterator for Traffic<'_> {
    type Item = Request;

    fn next(&mut self) -> Option<Request> {
        let offset = loop {
            if let Some(t) = self.pending.pop_front() {
                break t;
            }
            let ph = self.scenario.phases.get(self.phase)?;
            self.phase_start += ph.duration.get();
            self.phase += 1;
            self.fill_phase();
        };
        let ph = self.scenario.phases.get(self.phase)?;
        let names: Vec<&String> = if ph.templates.is_empty() {
            self.scenario.request_templates.keys().collect()
        } else {
            ph.templates.keys().collect()
        };
        let weights: Vec<f64> = if ph.templates.is_empty() {
            vec![1.0; names.len()]
        } else {
            ph.templates.values().map(|w| f64::from(*w)).collect()
        };
        let name = names.get(self.draw.weighted(&weights))?.as_str();
        let tpl = self.scenario.request_templates.get(name)?;
        let pool = &self.pools.iter().find(|(n, _)| n == name)?.1;
        let client = self.draw.below(pool.len());
        let ip = pool.address(client);
        let seq = self.seq;
        self.seq += 1;
        let r = |s: &str| render(s, client, &ip, seq, &ph.name);
        let mut headers = vec![
            (":method".to_string(), tpl.method.clone()),
            (":path".to_string(), r(&tpl.path)),
            (":authority".to_string(), r(&tpl.authority)),
            (":scheme".to_string(), tpl.scheme.clone()),
        ];
        headers.extend(
            tpl.headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), r(v))),
        );
        if tpl.body_bytes > 0 {
            headers.push(("content-length".into(), tpl.body_bytes.to_string()));
        }
        let port = 10_000 + (seq % 50_000);
        let source = match ip {
            IpAddr::V4(_) => format!("{ip}:{port}"),
            IpAddr::V6(_) => format!("[{ip}]:{port}"),
        };
        Some(Request {
            seq,
            phase: self.phase,
            at: self.phase_start + offset,
            template: name.to_string(),
            client,
            source,
            destination: tpl.destination.clone(),
            headers,
            body_bytes: tpl.body_bytes,
        })
    }
}

/// What the upstream does with one forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamAnswer {
    /// A response after `after`.
    Response {
        /// Delay from forwarding.
        after: Duration,
        /// `:status`.
        status: u16,
        /// Other headers.
        headers: Vec<(String, String)>,
        /// Body size.
        body_bytes: usize,
    },
    /// Connection refused: the proxy answers 503 at once.
    ConnectFailure,
    /// Reset before headers after `after`: the proxy answers 503.
    Reset {
        /// Delay from forwarding.
        after: Duration,
    },
}

/// Draws upstream answers from the scenario's `upstream:` section.
#[derive(Debug)]
pub struct UpstreamModel {
    spec: Upstream,
    statuses: Vec<u16>,
    weights: Vec<f64>,
    draw: Draw,
}

impl UpstreamModel {
    /// The model of `scenario.upstream`.
    pub fn new(scenario: &Scenario) -> Self {
        let spec = scenario.upstream.clone();
        UpstreamModel {
            statuses: spec.status.keys().copied().collect(),
            weights: spec.status.values().map(|p| p.value()).collect(),
            spec,
            draw: Draw::new(scenario.seed, 2),
        }
    }

    /// The answer to the next forwarded request.
    pub fn answer(&mut self) -> UpstreamAnswer {
        let f = self.spec.failures;
        let x = self.draw.unit();
        if x < f.connect.fraction() {
            return UpstreamAnswer::ConnectFailure;
        }
        let after = self.draw.latency(&self.spec.latency);
        if x < f.connect.fraction() + f.reset.fraction() {
            return UpstreamAnswer::Reset { after };
        }
        let status = self
            .statuses
            .get(self.draw.weighted(&self.weights))
            .copied()
            .unwrap_or(200);
        let mut headers: Vec<(String, String)> = self
            .spec
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        headers.push(("content-length".into(), self.spec.body_bytes.to_string()));
        UpstreamAnswer::Response {
            after,
            status,
            headers,
            body_bytes: self.spec.body_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(yaml: &str) -> Scenario {
        crate::parse::parse(yaml, "t.yaml").unwrap()
    }

    #[test]
    fn even_arrivals_follow_the_rate_phase_by_phase() {
        let s = scenario(
            "request_templates: {a: {}}\nphases:\n  - {name: one, duration: 1s, rate: 10/s}\n  - {name: idle, duration: 2s, rate: 0/s}\n  - {name: two, duration: 500ms, rate: 4/s}\n",
        );
        let reqs: Vec<Request> = Traffic::new(&s).unwrap().collect();
        assert_eq!(reqs.len(), 12);
        assert_eq!(reqs[0].at, Duration::ZERO);
        assert_eq!(reqs[9].at, Duration::from_millis(900));
        assert_eq!(reqs[10].phase, 2);
        assert_eq!(reqs[10].at, Duration::from_secs(3));
        assert_eq!(reqs[11].at, Duration::from_millis(3250));
        assert!(reqs.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    }

    #[test]
    fn templates_vary_per_client_and_follow_weights() {
        let s = scenario(
            "seed: 9\nrequest_templates:\n  a:\n    path: /u/{{client}}\n    headers: {x-user: 'user-{{client}}', x-from: '{{ip}}'}\n    clients: {cidr: 10.1.0.0/24, count: 4}\n  b: {method: POST, body_bytes: 10}\nphases:\n  - {name: p, duration: 10s, rate: 100/s, templates: {a: 3, b: 1}}\n",
        );
        let reqs: Vec<Request> = Traffic::new(&s).unwrap().collect();
        let a = reqs.iter().filter(|r| r.template == "a").count();
        assert!((650..850).contains(&a), "weights 3:1 gave {a}/1000");
        let r = reqs.iter().find(|r| r.template == "a").unwrap();
        let h = |k: &str| {
            r.headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(h(":path"), Some(format!("/u/{}", r.client)));
        assert_eq!(h("x-user"), Some(format!("user-{}", r.client)));
        assert_eq!(h("x-from"), Some(format!("10.1.0.{}", r.client)));
        assert!(r.source.starts_with(&format!("10.1.0.{}:", r.client)));
        let b = reqs.iter().find(|r| r.template == "b").unwrap();
        assert_eq!(b.body_bytes, 10);
        // Same seed, same traffic.
        let again: Vec<Request> = Traffic::new(&s).unwrap().collect();
        assert_eq!(reqs, again);
    }

    #[test]
    fn upstream_mix_and_failures() {
        let s = scenario(
            "upstream:\n  status: {200: 90%, 503: 10%}\n  latency: {fixed: 20ms}\n  failures: {connect: 5%}\nrequest_templates: {a: {}}\nphases: [{name: p, duration: 1s, rate: 1/s}]\n",
        );
        let mut m = UpstreamModel::new(&s);
        let (mut ok, mut bad, mut refused) = (0, 0, 0);
        for _ in 0..4000 {
            match m.answer() {
                UpstreamAnswer::Response {
                    status: 200, after, ..
                } => {
                    assert_eq!(after, Duration::from_millis(20));
                    ok += 1
                }
                UpstreamAnswer::Response { status: 503, .. } => bad += 1,
                UpstreamAnswer::ConnectFailure => refused += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!((3300..3550).contains(&ok), "{ok}");
        assert!((300..460).contains(&bad), "{bad}");
        assert!((130..280).contains(&refused), "{refused}");
    }

    #[test]
    fn cidr_pools_hand_out_addresses_in_order() {
        let c = Clients {
            cidr: Some("10.1.0.7/24".into()),
            count: Some(3),
            list: vec![],
        };
        let p = ClientPool::new(&c).unwrap();
        assert_eq!(p.address(2).to_string(), "10.1.0.2");
        let c6 = Clients {
            cidr: Some("fd00::/120".into()),
            count: Some(256),
            list: vec![],
        };
        assert_eq!(
            ClientPool::new(&c6).unwrap().address(255).to_string(),
            "fd00::ff"
        );
        let too_many = Clients {
            cidr: Some("10.0.0.0/30".into()),
            count: Some(5),
            list: vec![],
        };
        assert_eq!(ClientPool::new(&too_many).unwrap_err().0, "count");
    }
}
