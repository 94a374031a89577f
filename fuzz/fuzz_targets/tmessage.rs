//! T-messages as the server sees them, in every dialect.
//!
//! Input: one selector byte, then bytes. The selector's low bits pick the
//! dialect (9P2000, .u, .L); its top bit picks the mode:
//! - clear: the rest is `type[1] tag[2] body`, framed with a correct size
//!   field (so the fuzzer spends its time on bodies, not on guessing sizes);
//! - set: the rest is a raw byte stream, split by `FrameCodec` as the session
//!   splits a connection, each frame decoded.
//!
//! Property: decoding never panics, and whatever decodes re-encodes to the
//! exact bytes it came from (see `gproc_fuzz::check_t`).

#![no_main]

use bytes::BytesMut;
use gproc::proto::FrameCodec;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let d = gproc_fuzz::dialect(sel);
    if sel & 0x80 == 0 {
        gproc_fuzz::check_t(gproc_fuzz::framed(rest), d);
    } else {
        let mut codec = FrameCodec::new(8192);
        let mut buf = BytesMut::from(rest);
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            gproc_fuzz::check_t(f, d);
        }
        let _ = codec.decode_eof(&mut buf);
    }
});
