//! Fuzzes the registration parsers: a client registration response (RFC 7591 §3.2), a client ID
//! metadata document and a stored registration record must each give a value or a typed error,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    agent_oauth::__fuzz::registration(data);
});
