//! [`crate::filter!`]: the `#[no_mangle]` proxy-wasm exports of one filter, each a one-line
//! call into the dispatch. Must not know anything the dispatch does.

/// Generates a filter's proxy-wasm exports for root context type `$root` (a [`RootContext`]),
/// with `log` lines up to `$level` (default `Debug`) sent to the host. The worker's state is a
/// static on single-threaded wasm; elsewhere (a filter's native unit tests, which never call
/// the exports) a thread-local, so the same code compiles everywhere.
///
/// A third argument lists the stream callbacks to export, of `request_headers`,
/// `request_body`, `request_trailers`, `response_headers`, `response_body`,
/// `response_trailers` and `log` (without it, all of them). One left out is not called at all:
/// Envoy skips a callback the module does not export, which answers as the default does
/// (Continue), so a filter that never looks at bodies costs no entry into the VM per body
/// chunk. Context creation, `proxy_on_done`, `proxy_on_delete` and the root callbacks are
/// always exported.
#[macro_export]
macro_rules! filter {
    (@stream request_headers) => {
        #[no_mangle]
        pub extern "C" fn proxy_on_request_headers(id: u32, n: usize, end: u32) -> u32 {
            worker(|w| kit::request_headers(w, id, n, end != 0))
        }
    };
    (@stream request_body) => {
        #[no_mangle]
        pub extern "C" fn proxy_on_request_body(id: u32, n: usize, end: u32) -> u32 {
            worker(|w| kit::request_body(w, id, n, end != 0))
        }
    };
    (@stream request_trailers) => {
        #[no_mangle]
        pub extern "C" fn proxy_on_request_trailers(id: u32, n: usize) -> u32 {
            worker(|w| kit::request_trailers(w, id, n))
        }
    };
    (@stream response_headers) => {
        #[no_mangle]
        pub extern "C" fn proxy_on_response_headers(id: u32, n: usize, end: u32) -> u32 {
            worker(|w| kit::response_headers(w, id, n, end != 0))
        }
    };
    (@stream response_body) => {
        #[no_mangle]
        pub extern "C" fn proxy_on_response_body(id: u32, n: usize, end: u32) -> u32 {
            worker(|w| kit::response_body(w, id, n, end != 0))
        }
    };
    (@stream response_trailers) => {
        #[no_mangle]
        pub extern "C" fn proxy_on_response_trailers(id: u32, n: usize) -> u32 {
            worker(|w| kit::response_trailers(w, id, n))
        }
    };
    (@stream log) => {
        #[no_mangle]
        pub extern "C" fn proxy_on_log(id: u32) {
            worker(|w| kit::log(w, id))
        }
    };
    ($root:ty) => {
        $crate::filter!($root, $crate::filter::LevelFilter::Debug);
    };
    ($root:ty, $level:expr) => {
        $crate::filter!(
            $root,
            $level,
            [
                request_headers,
                request_body,
                request_trailers,
                response_headers,
                response_body,
                response_trailers,
                log
            ]
        );
    };
    ($root:ty, $level:expr, [$($stream:ident),* $(,)?]) => {
        const _: () = {
            use $crate::filter as kit;
            type W = kit::Global<kit::Worker<$root>>;

            #[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
            fn worker<T>(f: impl FnOnce(&W) -> T) -> T {
                static WORKER: W = kit::Global::new(kit::Worker::new());
                f(&WORKER)
            }
            #[cfg(not(all(target_arch = "wasm32", not(target_feature = "atomics"))))]
            fn worker<T>(f: impl FnOnce(&W) -> T) -> T {
                ::std::thread_local! {
                    static WORKER: W = const { kit::Global::new(kit::Worker::new()) };
                }
                WORKER.with(f)
            }

            #[no_mangle]
            pub extern "C" fn _initialize() {
                kit::initialize($level)
            }
            #[no_mangle]
            pub extern "C" fn proxy_abi_version_0_2_1() {}
            #[no_mangle]
            pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
                $crate::abi::allocate(size)
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_context_create(id: u32, parent: u32) {
                worker(|w| kit::context_create(w, id, parent))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_vm_start(id: u32, size: usize) -> bool {
                worker(|w| kit::vm_start(w, id, size))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_configure(id: u32, size: usize) -> bool {
                worker(|w| kit::configure(w, id, size))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_tick(id: u32) {
                worker(|w| kit::tick(w, id))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_queue_ready(id: u32, queue: u32) {
                worker(|w| kit::queue_ready(w, id, queue))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_done(id: u32) -> bool {
                worker(|w| kit::done(w, id))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_delete(id: u32) {
                worker(|w| kit::delete(w, id))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_http_call_response(
                _root: u32,
                _token: u32,
                _headers: usize,
                _body: usize,
                _trailers: usize,
            ) {
                // No HTTP calls are made through kit: nothing waits for an answer.
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_grpc_receive_initial_metadata(_: u32, _: u32, _: usize) {
                // Unary calls only: the metadata is not read (as the SDK for a call).
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_grpc_receive(_root: u32, token: u32, size: usize) {
                worker(|w| kit::grpc_answer(w, token, 0, size))
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_grpc_receive_trailing_metadata(_: u32, _: u32, _: usize) {
                // Unary calls only: the metadata is not read (as the SDK for a call).
            }
            #[no_mangle]
            pub extern "C" fn proxy_on_grpc_close(_root: u32, token: u32, status: u32) {
                worker(|w| kit::grpc_answer(w, token, status, 0))
            }
            $($crate::filter!(@stream $stream);)*
        };
    };
}
