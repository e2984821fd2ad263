//! Case `lifecycle`: the VM start/configure sequence, buffers by phase, log level, foreign
//! functions, `proxy_done`, `set_effective_context` and the plugin properties.

use crate::abi::{self, BAD_ARGUMENT, NOT_FOUND, OK};
use crate::report::{check, check_that};
use crate::{param, with};

pub fn configure(root_id: u32) -> u32 {
    let (init_first, vm_config, plugin_in_start, root) = with(|s| {
        (
            s.initialized_before_create,
            s.vm_config.clone(),
            s.plugin_config_in_vm_start,
            s.root_id,
        )
    });
    check("initialize_runs_before_root_context", init_first, true);
    check("configure_gets_root_context_id", root_id, root);
    let want_vm = param("vmcfg").unwrap_or_default();
    match vm_config {
        Some((status, bytes, size)) => {
            check("vm_start_reads_vm_configuration", status, OK);
            check(
                "vm_configuration_bytes",
                String::from_utf8_lossy(&bytes).into_owned(),
                want_vm.clone(),
            );
            check("vm_start_size_argument", size, want_vm.len());
        }
        None => {
            check_that("vm_start_called", false, "on_vm_start never ran");
        }
    }
    check(
        "plugin_configuration_unavailable_in_vm_start",
        plugin_in_start,
        NOT_FOUND,
    );
    let (status, level) = abi::log_level();
    check("get_log_level_ok", status, OK);
    check_that("get_log_level_in_range", level <= 5, level);
    check(
        "log_unknown_level_bad_argument",
        abi::log(99, "never shown"),
        BAD_ARGUMENT,
    );
    check(
        "foreign_function_unknown_not_found",
        abi::call_foreign("meshward_no_such_function", b"").0,
        NOT_FOUND,
    );
    check(
        "unknown_buffer_bad_argument",
        abi::get_buffer(42, 0, 10).0,
        BAD_ARGUMENT,
    );
    check("done_without_pending_not_found", abi::done(), NOT_FOUND);
    check(
        "set_effective_context_unknown_bad_argument",
        abi::set_effective_context(0x7fff_0001),
        BAD_ARGUMENT,
    );
    let prop = |name: &str| {
        let (s, v) = abi::get_property(&[name]);
        (s, String::from_utf8_lossy(&v).into_owned())
    };
    check(
        "plugin_name_property",
        prop("plugin_name"),
        (OK, param("name").unwrap_or_default()),
    );
    check(
        "plugin_root_id_property",
        prop("plugin_root_id"),
        (OK, param("root").unwrap_or_default()),
    );
    check(
        "plugin_vm_id_property",
        prop("plugin_vm_id"),
        (OK, param("vm").unwrap_or_default()),
    );
    let proxy_now = abi::now_nanos();
    check(
        "wasi_realtime_matches_proxy_time",
        abi::wasi_clock(0),
        (0, proxy_now),
    );
    crate::report::note(&format!("now_nanos={proxy_now}"));
    1
}

pub fn request_headers() -> u32 {
    check(
        "plugin_configuration_unavailable_in_request",
        abi::get_buffer(abi::BUF_PLUGIN_CONFIGURATION, 0, 100).0,
        NOT_FOUND,
    );
    check(
        "continue_upstream_unimplemented",
        abi::continue_stream(abi::STREAM_UPSTREAM),
        abi::UNIMPLEMENTED,
    );
    abi::CONTINUE
}
