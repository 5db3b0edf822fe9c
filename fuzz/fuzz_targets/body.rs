//! cargo-fuzz target `body`: see `ferrowsgi_fuzz::check_body` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrowsgi_fuzz::check_body(data);
});
