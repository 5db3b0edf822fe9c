//! cargo-fuzz target `head_split`: see `ferrowsgi_fuzz::check_head_split` for the invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrowsgi_fuzz::check_head_split(data);
});
