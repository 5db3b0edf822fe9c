//! cargo-fuzz target `uwsgi`: see `ferrowsgi_fuzz::check_uwsgi` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrowsgi_fuzz::check_uwsgi(data);
});
