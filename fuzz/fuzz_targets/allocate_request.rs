#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| allocate_fuzz::allocate_request(data));
