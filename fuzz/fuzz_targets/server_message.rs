#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| allocate_fuzz::server_message(data));
