//! Local replies and resuming paused requests without the SDK's panicking wrappers: a
//! status the SDK does not expect (the stream is already gone, headers already sent) must
//! not trap the VM, so these call the ABI directly and return whether it worked.

/// Sends a local reply on the current context; false when the host refused.
pub fn send(status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        // Sized once: count, two lengths per pair, then each name and value NUL-terminated.
        let text: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let mut buf: Vec<u8> = Vec::with_capacity(4 + 8 * headers.len() + text);
        let count = u32::try_from(headers.len()).unwrap_or(0);
        buf.extend_from_slice(&count.to_le_bytes());
        for (k, v) in headers {
            buf.extend_from_slice(&u32::try_from(k.len()).unwrap_or(0).to_le_bytes());
            buf.extend_from_slice(&u32::try_from(v.len()).unwrap_or(0).to_le_bytes());
        }
        for (k, v) in headers {
            buf.extend_from_slice(k.as_bytes());
            buf.push(0);
            buf.extend_from_slice(v.as_bytes());
            buf.push(0);
        }
        let details = b"meshward";
        // SAFETY: every pointer/length pair describes a live buffer for the call's duration.
        let status = unsafe {
            abi::proxy_send_local_response(
                u32::from(status),
                details.as_ptr(),
                details.len(),
                body.as_ptr(),
                body.len(),
                buf.as_ptr(),
                buf.len(),
                -1,
            )
        };
        status == 0
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (status, headers, body);
        false
    }
}

/// Resumes the paused request of `context_id` from the root context; false when that
/// stream no longer exists.
pub fn resume_request(context_id: u32) -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: plain integer arguments.
        unsafe {
            abi::proxy_set_effective_context(context_id) == 0 && abi::proxy_continue_stream(0) == 0
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = context_id;
        false
    }
}

/// Sends a local reply for the paused request of `context_id` from the root context.
pub fn reply_to(context_id: u32, status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        // SAFETY: plain integer argument.
        let ok = unsafe { abi::proxy_set_effective_context(context_id) } == 0;
        ok && send(status, headers, body)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (context_id, status, headers, body);
        false
    }
}

#[cfg(target_arch = "wasm32")]
mod abi {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_send_local_response(
            status_code: u32,
            status_code_details_data: *const u8,
            status_code_details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        pub fn proxy_set_effective_context(context_id: u32) -> u32;
        pub fn proxy_continue_stream(stream_type: u32) -> u32;
    }
}
