#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| allocate_fuzz::inventory_query(data));
