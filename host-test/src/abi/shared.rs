//! Shared data (`proxy_get/set_shared_data`, Envoy CAS rules) and shared queues
//! (`proxy_register/resolve/enqueue/dequeue_shared_queue`; on_queue_ready goes to the last
//! registrant's worker through its inbox). Must not know how workers deliver.

use super::{mem_state, put_u32, return_scratch, slice, status, take_scratch, Reg, C, R};
use crate::callouts::Inbox;
use crate::queues::{Dequeue, Registrant};
use crate::shared_data::SetOutcome;

pub(super) fn add(r: &mut Reg) {
    r.func(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, pp: i32, sp: i32, cas_ptr: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let Some(key) = slice(mem, kp, kl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let mut out = std::mem::take(&mut st.scratch);
            out.clear();
            let cas = st.shared.get_with(key, |e| {
                e.map(|(v, cas)| {
                    out.extend_from_slice(v);
                    cas
                })
            });
            let Some(cas) = cas else {
                st.scratch = out;
                return Ok(status::NOT_FOUND);
            };
            if !put_u32(mem, cas_ptr, cas) {
                st.scratch = out;
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            return_scratch(&mut c, out, pp, sp)
        },
    );
    r.func(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let (Some(key), Some(value)) = (slice(mem, kp, kl), slice(mem, vp, vl)) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            Ok(match st.shared.set(key, value, cas as u32) {
                SetOutcome::Ok(_) => status::OK,
                SetOutcome::CasMismatch => status::CAS_MISMATCH,
            })
        },
    );
    r.func(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: i32, nl: i32, out: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let Some(name) = slice(mem, np, nl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let name = String::from_utf8_lossy(name);
            let who = Registrant {
                worker: st.worker.unwrap_or(usize::MAX),
                plugin: st.plugin_index,
                vm_generation: st.generation,
                root_ctx: st.root_ctx,
            };
            let t = st.host.queues.register(&st.plugin.spec.vm_id, &name, who);
            Ok(if put_u32(mem, out, t) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            })
        },
    );
    r.func(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: i32, vl: i32, np: i32, nl: i32, out: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let (Some(vm_id), Some(name)) = (slice(mem, vp, vl), slice(mem, np, nl)) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let (vm_id, name) = (
                String::from_utf8_lossy(vm_id),
                String::from_utf8_lossy(name),
            );
            match st.host.queues.resolve(&vm_id, &name) {
                None => Ok(status::NOT_FOUND),
                Some(t) => Ok(if put_u32(mem, out, t) {
                    status::OK
                } else {
                    status::INVALID_MEMORY_ACCESS
                }),
            }
        },
    );
    r.func(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, token: i32, vp: i32, vl: i32| -> R {
            let Some((mem, st)) = mem_state(&mut c) else {
                return Ok(status::INTERNAL_FAILURE);
            };
            let Some(value) = slice(mem, vp, vl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let token = token as u32;
            match st.host.queues.enqueue(token, value) {
                None => Ok(status::NOT_FOUND),
                Some(who) => {
                    if let Some(w) = who {
                        st.host.notify(
                            w.worker,
                            Inbox::QueueReady {
                                plugin: w.plugin,
                                vm_generation: w.vm_generation,
                                root_ctx: w.root_ctx,
                                token,
                            },
                        );
                    }
                    Ok(status::OK)
                }
            }
        },
    );
    r.func(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, token: i32, pp: i32, sp: i32| -> R {
            let st = c.data_mut();
            let mut out = take_scratch(st);
            match st.host.queues.dequeue(token as u32) {
                Dequeue::NotFound => {
                    st.scratch = out;
                    Ok(status::NOT_FOUND)
                }
                Dequeue::Empty => {
                    st.scratch = out;
                    Ok(status::EMPTY)
                }
                Dequeue::Item(v) => {
                    out.extend_from_slice(&v);
                    return_scratch(&mut c, out, pp, sp)
                }
            }
        },
    );
}
