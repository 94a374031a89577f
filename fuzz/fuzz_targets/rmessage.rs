//! R-messages as the client sees them, in every dialect.
//!
//! Same input layout as `tmessage`: a selector byte (dialect in the low
//! bits, raw-stream mode in the top bit), then a typed frame or a stream.
//!
//! Property: decoding never panics, whatever decodes re-encodes to the
//! exact bytes it came from, and the payloads a client parses further
//! (`Rread` of a 9P2000 directory, `Rreaddir`) never panic either.

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
        gproc_fuzz::check_r(gproc_fuzz::framed(rest), d);
    } else {
        let mut codec = FrameCodec::new(8192);
        let mut buf = BytesMut::from(rest);
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            gproc_fuzz::check_r(f, d);
        }
        let _ = codec.decode_eof(&mut buf);
    }
});
