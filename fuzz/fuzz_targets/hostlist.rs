//! Hostlists (`n[0001-2000],login[1-2]`) as written in configs and views.
//!
//! Property: parsing never panics; a parsed list expands (with a limit)
//! to names it `contains`, and `compress` of those names parses back to a
//! list expanding to the same names.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        gproc_fuzz::check_hostlist(text);
    }
});
