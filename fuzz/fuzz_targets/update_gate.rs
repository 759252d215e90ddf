#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arena_core::fuzzing::update_gate(data));
