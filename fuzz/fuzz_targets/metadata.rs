//! Fuzzes the metadata parser: arbitrary bytes must give a value or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    agent_oauth::__fuzz::metadata(data);
});
