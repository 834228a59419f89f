//! Fuzzes the unverified JWT reader and what is read through it (`cnf`, the `act` chain):
//! arbitrary text must give claims or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    agent_oauth::__fuzz::jwt(data);
});
