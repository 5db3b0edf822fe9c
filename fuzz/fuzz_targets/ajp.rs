//! cargo-fuzz target `ajp`: see `ferrowsgi_fuzz::ajp` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrowsgi_fuzz::check_ajp(data);
});
