//! cargo-fuzz target `scgi`: see `ferrowsgi_fuzz::check_scgi` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrowsgi_fuzz::check_scgi(data);
});
