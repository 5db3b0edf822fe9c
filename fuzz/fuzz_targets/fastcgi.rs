//! cargo-fuzz target `fastcgi`: see `ferrowsgi_fuzz::fastcgi` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrowsgi_fuzz::check_fastcgi(data);
});
