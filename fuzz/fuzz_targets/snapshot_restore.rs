#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| allocate_fuzz::snapshot_restore(data));
