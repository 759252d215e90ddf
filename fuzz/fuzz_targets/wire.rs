#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arena_core::fuzzing::wire(data));
