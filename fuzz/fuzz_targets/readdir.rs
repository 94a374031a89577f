//! Directory payloads a client parses: 9P2000/.u stat records read from a
//! directory (`Stat::decode_dir`) and 9P2000.L `Rreaddir` entries
//! (`DirEntry::decode_all`).
//!
//! Input: a selector byte (low bits: dialect for stat records; top bit set:
//! readdir entries), then the payload.
//!
//! Property: never panics; whatever decodes re-encodes to the same bytes;
//! the client's conversions (`DirEntryInfo`, `Metadata`) never panic.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let payload = Bytes::copy_from_slice(rest);
    if sel & 0x80 == 0 {
        gproc_fuzz::check_stat_dir(payload, gproc_fuzz::dialect(sel));
    } else {
        gproc_fuzz::check_dirents(payload);
    }
});
