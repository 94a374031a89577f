//! `Config::from_str` on hostile configuration text.
//!
//! Property: never panics, never hangs or allocates without bound (the
//! fuzzer's -timeout and -rss_limit_mb catch those), and rendering the
//! diagnostics or the summary never panics either.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        gproc_fuzz::check_config(text);
    }
});
