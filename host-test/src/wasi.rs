//! WASI preview1 as Envoy provides it to proxy-wasm guests (cpp-host `exports.h`
//! `FOR_ALL_WASI_FUNCTIONS`), under both `wasi_snapshot_preview1` and `wasi_unstable`, written
//! here rather than taken from wasmtime-wasi: fd_write goes to the plugin log (fd 1 INFO, fd 2
//! ERROR, BADF otherwise), clocks come from the host `Clock`, random_get gives at most 64 KiB
//! (INVAL above), environ from the PluginSpec env, empty args, proc_exit traps,
//! poll_oneoff succeeds with 0 events, sched_yield 0, clock_res_get 1 ns, the rest are stubs
//! (ENOTSUP/BADF). Also the "older Envoy" allow-list used by strict mode.
//! Must not know about proxy-wasm streams.

use crate::abi::{mem_state, put_u32, put_u64, slice, Reg, C};
use crate::logs::LogLevel;

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const INVAL: i32 = 28;
const NOTSUP: i32 = 58;

/// cpp-host `PROXY_WASM_HOST_WASI_RANDOM_GET_MAX_SIZE_BYTES`.
const RANDOM_MAX: u32 = 64 * 1024;

/// WASI functions Envoy provided before Dec 2024 (§1.6 "Version caveat"): what strict mode
/// accepts.
pub(crate) const OLD_ENVOY_WASI: [&str; 18] = [
    "fd_write",
    "fd_read",
    "fd_seek",
    "fd_close",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "environ_get",
    "environ_sizes_get",
    "args_get",
    "args_sizes_get",
    "clock_time_get",
    "random_get",
    "sched_yield",
    "poll_oneoff",
    "proc_exit",
    "path_open",
    "fd_prestat_get",
    "fd_prestat_dir_name",
];

/// The WASI modules registered.
pub(crate) const WASI_MODULES: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];

fn fd_write(c: &mut C<'_>, fd: i32, iovs: i32, n: i32, written: i32) -> i32 {
    let Some((mem, st)) = mem_state(c) else {
        return FAULT;
    };
    let level = match fd {
        1 => LogLevel::Info,
        2 => LogLevel::Error,
        _ => return BADF,
    };
    let mut text = Vec::new();
    for i in 0..n.max(0) {
        let Some(iov) = slice(mem, iovs.wrapping_add(i * 8), 8) else {
            return FAULT;
        };
        let p = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let l = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        let Some(b) = slice(mem, p, l) else {
            return FAULT;
        };
        text.extend_from_slice(b);
    }
    let total = text.len() as u32;
    if !put_u32(mem, written, total) {
        return FAULT;
    }
    if text.last() == Some(&b'\n') {
        text.pop();
    }
    st.log(level, String::from_utf8_lossy(&text).into_owned());
    SUCCESS
}

fn environ(st: &crate::vm::VmState) -> impl Iterator<Item = Vec<u8>> + '_ {
    st.plugin.spec.env.iter().map(|(k, v)| {
        let mut e = Vec::with_capacity(k.len() + v.len() + 2);
        e.extend_from_slice(k.as_bytes());
        e.push(b'=');
        e.extend_from_slice(v.as_bytes());
        e.push(0);
        e
    })
}

pub(crate) fn add(r: &mut Reg) {
    for m in WASI_MODULES {
        r.func(
            m,
            "fd_write",
            |mut c: C<'_>, fd: i32, iovs: i32, n: i32, w: i32| -> i32 {
                fd_write(&mut c, fd, iovs, n, w)
            },
        );
        r.func(
            m,
            "fd_read",
            |_c: C<'_>, _fd: i32, _i: i32, _n: i32, _r: i32| -> i32 { BADF },
        );
        r.func(
            m,
            "fd_seek",
            |_c: C<'_>, _fd: i32, _o: i64, _w: i32, _p: i32| -> i32 { NOTSUP },
        );
        r.func(m, "fd_close", |_c: C<'_>, _fd: i32| -> i32 { NOTSUP });
        r.func(m, "fd_fdstat_get", |mut c: C<'_>, fd: i32, p: i32| -> i32 {
            if fd != 1 && fd != 2 {
                return BADF;
            }
            let Some((mem, _)) = mem_state(&mut c) else {
                return FAULT;
            };
            // filetype CHARACTER_DEVICE (2), no flags, no rights.
            let ok = put_u64(mem, p, 2) && put_u64(mem, p + 8, 0) && put_u64(mem, p + 16, 0);
            if ok {
                SUCCESS
            } else {
                FAULT
            }
        });
        r.func(
            m,
            "fd_fdstat_set_flags",
            |_c: C<'_>, _fd: i32, _f: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "fd_fdstat_set_rights",
            |_c: C<'_>, _fd: i32, _a: i64, _b: i64| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "environ_sizes_get",
            |mut c: C<'_>, cp: i32, sp: i32| -> i32 {
                let Some((mem, st)) = mem_state(&mut c) else {
                    return FAULT;
                };
                let (n, size) =
                    environ(st).fold((0u32, 0u32), |(n, s), e| (n + 1, s + e.len() as u32));
                if put_u32(mem, cp, n) && put_u32(mem, sp, size) {
                    SUCCESS
                } else {
                    FAULT
                }
            },
        );
        r.func(
            m,
            "environ_get",
            |mut c: C<'_>, ptrs: i32, buf: i32| -> i32 {
                let Some((mem, st)) = mem_state(&mut c) else {
                    return FAULT;
                };
                let mut at = buf;
                for (i, e) in environ(st).enumerate() {
                    let p = at as u32 as usize;
                    let Some(dst) = p.checked_add(e.len()).and_then(|end| mem.get_mut(p..end))
                    else {
                        return FAULT;
                    };
                    dst.copy_from_slice(&e);
                    if !put_u32(mem, ptrs + (i as i32) * 4, at as u32) {
                        return FAULT;
                    }
                    at += e.len() as i32;
                }
                SUCCESS
            },
        );
        r.func(
            m,
            "args_sizes_get",
            |mut c: C<'_>, cp: i32, sp: i32| -> i32 {
                let Some((mem, _)) = mem_state(&mut c) else {
                    return FAULT;
                };
                if put_u32(mem, cp, 0) && put_u32(mem, sp, 0) {
                    SUCCESS
                } else {
                    FAULT
                }
            },
        );
        r.func(m, "args_get", |_c: C<'_>, _a: i32, _b: i32| -> i32 {
            SUCCESS
        });
        r.func(
            m,
            "clock_time_get",
            |mut c: C<'_>, id: i32, _prec: i64, out: i32| -> i32 {
                let Some((mem, st)) = mem_state(&mut c) else {
                    return FAULT;
                };
                let t = match id {
                    0 => st.host.clock.now_nanos(),
                    1 => st.host.clock.monotonic_nanos(),
                    _ => return NOTSUP,
                };
                if put_u64(mem, out, t) {
                    SUCCESS
                } else {
                    FAULT
                }
            },
        );
        r.func(
            m,
            "clock_res_get",
            |mut c: C<'_>, id: i32, out: i32| -> i32 {
                if id != 0 && id != 1 {
                    return NOTSUP;
                }
                let Some((mem, _)) = mem_state(&mut c) else {
                    return FAULT;
                };
                if put_u64(mem, out, 1) {
                    SUCCESS
                } else {
                    FAULT
                }
            },
        );
        r.func(m, "random_get", |mut c: C<'_>, buf: i32, len: i32| -> i32 {
            if len as u32 > RANDOM_MAX {
                return INVAL;
            }
            let Some((mem, st)) = mem_state(&mut c) else {
                return FAULT;
            };
            let p = buf as u32 as usize;
            let Some(dst) = p
                .checked_add(len as u32 as usize)
                .and_then(|e| mem.get_mut(p..e))
            else {
                return FAULT;
            };
            for chunk in dst.chunks_mut(8) {
                let r = st.next_random().to_le_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
            SUCCESS
        });
        r.func(m, "sched_yield", |_c: C<'_>| -> i32 { SUCCESS });
        r.func(
            m,
            "poll_oneoff",
            |mut c: C<'_>, _i: i32, _o: i32, _n: i32, ne: i32| -> i32 {
                // Success with 0 events (the Go runtime needs this; cpp-host issue #497).
                let Some((mem, _)) = mem_state(&mut c) else {
                    return FAULT;
                };
                if put_u32(mem, ne, 0) {
                    SUCCESS
                } else {
                    FAULT
                }
            },
        );
        r.func(
            m,
            "proc_exit",
            |_c: C<'_>, code: i32| -> wasmtime::Result<()> {
                Err(wasmtime::Error::msg(format!(
                    "proc_exit({code}) called: a proxy-wasm module must not exit"
                )))
            },
        );
        r.func(m, "fd_prestat_get", |_c: C<'_>, _fd: i32, _p: i32| -> i32 {
            BADF
        });
        r.func(
            m,
            "fd_prestat_dir_name",
            |_c: C<'_>, _fd: i32, _p: i32, _l: i32| -> i32 { BADF },
        );
        r.func(
            m,
            "path_open",
            |_c: C<'_>,
             _fd: i32,
             _df: i32,
             _p: i32,
             _l: i32,
             _of: i32,
             _rb: i64,
             _ri: i64,
             _ff: i32,
             _o: i32|
             -> i32 { NOTSUP },
        );
        // The newer stubs (cpp-host PR #427 and #533).
        r.func(
            m,
            "fd_advise",
            |_c: C<'_>, _fd: i32, _o: i64, _l: i64, _a: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "fd_allocate",
            |_c: C<'_>, _fd: i32, _o: i64, _l: i64| -> i32 { NOTSUP },
        );
        r.func(m, "fd_datasync", |_c: C<'_>, _fd: i32| -> i32 { NOTSUP });
        r.func(
            m,
            "fd_filestat_get",
            |_c: C<'_>, _fd: i32, _b: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "fd_filestat_set_size",
            |_c: C<'_>, _fd: i32, _s: i64| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "fd_filestat_set_times",
            |_c: C<'_>, _fd: i32, _a: i64, _m: i64, _f: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "fd_pread",
            |_c: C<'_>, _fd: i32, _i: i32, _n: i32, _o: i64, _r: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "fd_pwrite",
            |_c: C<'_>, _fd: i32, _i: i32, _n: i32, _o: i64, _r: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "fd_readdir",
            |_c: C<'_>, _fd: i32, _b: i32, _l: i32, _k: i64, _u: i32| -> i32 { NOTSUP },
        );
        r.func(m, "fd_renumber", |_c: C<'_>, _fd: i32, _t: i32| -> i32 {
            NOTSUP
        });
        r.func(m, "fd_sync", |_c: C<'_>, _fd: i32| -> i32 { NOTSUP });
        r.func(m, "fd_tell", |_c: C<'_>, _fd: i32, _p: i32| -> i32 {
            NOTSUP
        });
        r.func(
            m,
            "path_create_directory",
            |_c: C<'_>, _fd: i32, _p: i32, _l: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "path_filestat_get",
            |_c: C<'_>, _fd: i32, _f: i32, _p: i32, _l: i32, _b: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "path_filestat_set_times",
            |_c: C<'_>, _fd: i32, _f: i32, _p: i32, _l: i32, _a: i64, _m: i64, _s: i32| -> i32 {
                NOTSUP
            },
        );
        r.func(
            m,
            "path_link",
            |_c: C<'_>,
             _fd: i32,
             _f: i32,
             _p: i32,
             _l: i32,
             _fd2: i32,
             _p2: i32,
             _l2: i32|
             -> i32 { NOTSUP },
        );
        r.func(
            m,
            "path_readlink",
            |_c: C<'_>, _fd: i32, _p: i32, _l: i32, _b: i32, _bl: i32, _u: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "path_remove_directory",
            |_c: C<'_>, _fd: i32, _p: i32, _l: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "path_rename",
            |_c: C<'_>, _fd: i32, _p: i32, _l: i32, _fd2: i32, _p2: i32, _l2: i32| -> i32 {
                NOTSUP
            },
        );
        r.func(
            m,
            "path_symlink",
            |_c: C<'_>, _p: i32, _l: i32, _fd: i32, _p2: i32, _l2: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "path_unlink_file",
            |_c: C<'_>, _fd: i32, _p: i32, _l: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "sock_accept",
            |_c: C<'_>, _fd: i32, _f: i32, _o: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "sock_recv",
            |_c: C<'_>, _fd: i32, _d: i32, _l: i32, _f: i32, _o: i32, _of: i32| -> i32 { NOTSUP },
        );
        r.func(
            m,
            "sock_send",
            |_c: C<'_>, _fd: i32, _d: i32, _l: i32, _f: i32, _o: i32| -> i32 { NOTSUP },
        );
        r.func(m, "sock_shutdown", |_c: C<'_>, _fd: i32, _h: i32| -> i32 {
            NOTSUP
        });
    }
}
