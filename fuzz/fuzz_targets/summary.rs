//! The node summary file (`/.gproc/ps`) as the aggregator parses it: any
//! bytes a node sends.
//!
//! Property: `parse` never panics; what parses encodes to bytes that parse
//! to the same summary, and encoding that gives the same bytes again
//! (parse -> encode -> parse is a fixed point).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gproc_fuzz::check_summary(data);
});
