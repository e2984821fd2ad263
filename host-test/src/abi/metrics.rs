//! `proxy_define_metric`, `proxy_record_metric`, `proxy_increment_metric`, `proxy_get_metric`
//! on the host-wide registry. Must not know about Prometheus rendering.

use super::{mem_state, put_u32, put_u64, slice, status, Reg, C, R};
use crate::metrics::MetricError;

fn st(r: Result<(), MetricError>) -> i32 {
    match r {
        Ok(()) => status::OK,
        Err(MetricError::NotFound) => status::NOT_FOUND,
        Err(MetricError::BadArgument) => status::BAD_ARGUMENT,
    }
}

pub(super) fn add(r: &mut Reg) {
    r.func(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, kind: i32, np: i32, nl: i32, out: i32| -> R {
            let Some((mem, s)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let Some(name) = slice(mem, np, nl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let name = String::from_utf8_lossy(name);
            match s.host.metrics.define(kind, &name) {
                Err(e) => Ok(st(Err(e))),
                Ok(id) => Ok(if put_u32(mem, out, id) {
                    status::OK
                } else {
                    status::INVALID_MEMORY_ACCESS
                }),
            }
        },
    );
    r.func(
        "env",
        "proxy_record_metric",
        |c: C<'_>, id: i32, v: i64| -> R {
            Ok(st(c.data().host.metrics.record(id as u32, v as u64)))
        },
    );
    r.func(
        "env",
        "proxy_increment_metric",
        |mut c: C<'_>, id: i32, d: i64| -> R {
            let s = c.data_mut();
            Ok(st(s.host.metrics.increment(
                &mut s.metric_cache,
                id as u32,
                d,
            )))
        },
    );
    r.func(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: i32, out: i32| -> R {
            let Some((mem, s)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            match s.host.metrics.get_by_id(id as u32) {
                Err(e) => Ok(st(Err(e))),
                Ok(v) => Ok(if put_u64(mem, out, v) {
                    status::OK
                } else {
                    status::INVALID_MEMORY_ACCESS
                }),
            }
        },
    );
}
