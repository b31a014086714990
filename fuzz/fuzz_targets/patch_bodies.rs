#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| allocate_fuzz::patch_bodies(data));
