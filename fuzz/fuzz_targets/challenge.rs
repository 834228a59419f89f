//! Fuzzes the `WWW-Authenticate` challenge parser: arbitrary bytes (split
//! into header lines at `\n`) must parse or fail with a typed error, and
//! every successful parse must survive a render/parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    agent_oauth::__fuzz::challenge(data);
});
