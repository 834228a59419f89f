//! Fuzzes the Server-Sent Events parser: the first byte gives a chunk size, and the rest read in
//! chunks of that size must give the same events as one push, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    agent_oauth::__fuzz::sse(data);
});
