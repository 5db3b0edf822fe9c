//! cargo-fuzz target `proxy`: see `ferrowsgi_fuzz::check_proxy` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrowsgi_fuzz::check_proxy(data);
});
