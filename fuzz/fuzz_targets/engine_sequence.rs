#![no_main]

libfuzzer_sys::fuzz_target!(|scenario: allocate_fuzz::Scenario| {
    allocate_fuzz::run_scenario(&scenario)
});
