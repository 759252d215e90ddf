#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arena_bootstrap::fuzzing::ws_frame(data));
