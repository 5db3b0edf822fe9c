//! cargo-fuzz target `head`: see `ferrowsgi_fuzz::check_head` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrowsgi_fuzz::check_head(data);
});
