//! The properties the fuzz targets check, shared by the targets (in
//! `fuzz_targets/`). Each `check_*` function panics when a property fails,
//! which is how libFuzzer learns about it; none of them panic on input the
//! code under test merely rejects.
//!
//! Every crash these find becomes a test with the exact bytes in
//! `tests/it/hostile_server.rs` or `tests/it/hostile_client.rs` of the main crate.

use bytes::{Bytes, BytesMut};
use gproc::format::summary;
use gproc::client::{DirEntryInfo, Metadata};
use gproc::config::{Config, hostlist};
use gproc::proto::{Dialect, DirEntry, Frame, Rmessage, Rreaddir, Stat, Tmessage};

/// The dialect a selector byte picks (its low bits).
pub fn dialect(sel: u8) -> Dialect {
    match sel % 3 {
        0 => Dialect::P2000,
        1 => Dialect::P2000u,
        _ => Dialect::P2000L,
    }
}

/// `type[1] tag[2] body` framed with a correct `size[4]` in front.
pub fn framed(rest: &[u8]) -> Bytes {
    let mut f = Vec::with_capacity(rest.len() + 4);
    f.extend_from_slice(
        &u32::try_from(rest.len() + 4)
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    f.extend_from_slice(rest);
    Bytes::from(f)
}

/// A T-message frame: decode; what decodes must re-encode to the same
/// bytes. The one lenient decode: `Twstat`'s stat record (see
/// [`check_stat_dir`]), whose canonical re-encoding must be a fixed point.
pub fn check_t(frame: Bytes, d: Dialect) {
    let Ok(f) = Frame::<Tmessage>::decode(frame.clone(), d) else {
        return;
    };
    let again = f
        .to_bytes(d)
        .unwrap_or_else(|e| panic!("decoded {f:?} does not re-encode in {d}: {e}"));
    if matches!(f.msg, Tmessage::Wstat(_)) {
        let g = Frame::<Tmessage>::decode(again.clone(), d)
            .unwrap_or_else(|e| panic!("{d}: re-encoded {f:?} does not decode: {e}"));
        assert_eq!(g, f, "{d}: the canonical re-encoding decodes differently");
        assert_eq!(g.to_bytes(d).ok(), Some(again), "{d}: not a fixed point");
    } else {
        assert_eq!(again, frame, "{d}: {f:?} re-encodes to different bytes");
    }
}

/// An R-message frame: decode; what decodes must re-encode to the same
/// bytes; payloads the client parses further must not panic.
pub fn check_r(frame: Bytes, d: Dialect) {
    let Ok(f) = Frame::<Rmessage>::decode(frame.clone(), d) else {
        return;
    };
    let again = f
        .to_bytes(d)
        .unwrap_or_else(|e| panic!("decoded {f:?} does not re-encode in {d}: {e}"));
    // Lenient decodes: Rstat's record (see check_stat_dir) and its outer
    // n[2], which is not checked; Rerror's errno, optional in .u/.L.
    let lenient = matches!(f.msg, Rmessage::Stat(_))
        || (matches!(f.msg, Rmessage::Error(_)) && d != Dialect::P2000);
    if lenient {
        let g = Frame::<Rmessage>::decode(again.clone(), d)
            .unwrap_or_else(|e| panic!("{d}: re-encoded {f:?} does not decode: {e}"));
        assert_eq!(g, f, "{d}: the canonical re-encoding decodes differently");
        assert_eq!(g.to_bytes(d).ok(), Some(again), "{d}: not a fixed point");
    } else {
        assert_eq!(again, frame, "{d}: {f:?} re-encodes to different bytes");
    }
    match &f.msg {
        Rmessage::Read(r) if d != Dialect::P2000L => check_stat_dir(r.data.clone(), d),
        Rmessage::Readdir(r) => check_dirents(r.data.clone()),
        Rmessage::Stat(s) => {
            let _ = Metadata::from_stat(&s.stat);
        }
        Rmessage::Getattr(g) => {
            let _ = Metadata::from_attr(&g.attr);
        }
        _ => {}
    }
}

/// A 9P2000/.u directory read: back-to-back stat records.
///
/// A record whose size[2] covers more than its fields decodes, the rest
/// skipped as "a newer extension" (records.rs): such input re-encodes
/// shorter. That is intended; what must hold is that the skipping stays
/// inside the record (every record decodes, the same ones decode again
/// from the canonical bytes) and the canonical bytes are a fixed point.
pub fn check_stat_dir(data: Bytes, d: Dialect) {
    let Ok(stats) = Stat::decode_dir(d, data.clone()) else {
        return;
    };
    let mut again = BytesMut::new();
    for s in &stats {
        s.encode_to(d, &mut again)
            .unwrap_or_else(|e| panic!("decoded {s:?} does not re-encode in {d}: {e}"));
        let _ = DirEntryInfo::from_stat(s);
        let _ = Metadata::from_stat(s);
    }
    let again = again.freeze();
    if again != data {
        assert!(again.len() < data.len(), "{d}: re-encoding grew {stats:?}");
        let back = Stat::decode_dir(d, again.clone())
            .unwrap_or_else(|e| panic!("{d}: re-encoded {stats:?} does not decode: {e}"));
        assert_eq!(
            back, stats,
            "{d}: the canonical re-encoding decodes differently"
        );
    }
}

/// A 9P2000.L `Rreaddir` payload.
pub fn check_dirents(data: Bytes) {
    let Ok(ents) = DirEntry::decode_all(data.clone()) else {
        return;
    };
    let mut again = BytesMut::new();
    for e in &ents {
        e.encode_to(&mut again)
            .unwrap_or_else(|err| panic!("decoded {e:?} does not re-encode: {err}"));
        let _ = DirEntryInfo::from_dirent(e);
    }
    assert_eq!(
        again.freeze(),
        data,
        "entries {ents:?} re-encode to different bytes"
    );
    // What a server packs into the same count holds every entry, unchanged.
    let count = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let (packed, n) = Rreaddir::pack(&ents, count);
    assert_eq!(n, ents.len(), "pack dropped entries that fit");
    assert_eq!(packed.data, data, "pack changed the entries");
}

/// The node summary: parse never panics; parse -> encode -> parse is a
/// fixed point.
pub fn check_summary(data: &[u8]) {
    let s = match summary::parse(data) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            let _ = e.line();
            return;
        }
    };
    let enc = s.encode();
    let s2 = summary::parse(&enc).unwrap_or_else(|e| {
        panic!(
            "encode of a parsed summary does not parse: {e}\n{}",
            String::from_utf8_lossy(&enc)
        )
    });
    assert_eq!(s2, s, "parse -> encode -> parse changed the summary");
    assert_eq!(s2.encode(), enc, "encode is not stable");
    for p in &s.procs {
        let _ = p.cpu_seconds(s.clk_tck);
        let _ = p.start_time_unix(s.boot_time, s.clk_tck);
        let _ = p.rss_bytes(s.page_size);
        let _ = p.cmdline_display();
    }
}

/// A configuration file: never panics, and neither does printing the
/// result.
pub fn check_config(text: &str) {
    match Config::from_str(text, "fuzz.toml") {
        Ok(c) => {
            let _ = c.summary().to_string();
            for n in c.nodes.iter().take(4) {
                let _ = c.node(&n.name);
            }
        }
        Err(errs) => {
            let _ = errs.to_string();
        }
    }
}

/// A hostlist: parse, bounded expansion, membership, compress round trip.
pub fn check_hostlist(text: &str) {
    let Ok(list) = hostlist::Hostlist::parse(text) else {
        return;
    };
    let _ = list.len();
    let Ok(names) = list.expand_limit(4096) else {
        return;
    };
    for n in &names {
        assert!(
            list.contains(n),
            "{text:?} expands to {n:?} but does not contain it"
        );
    }
    // Names a hostlist cannot spell are not compressed.
    if names.is_empty()
        || names.iter().any(|n| {
            n.is_empty()
                || n.contains(|c: char| c.is_whitespace() || "[],".contains(c))
        })
    {
        return;
    }
    let short = hostlist::compress(&names);
    let back = hostlist::Hostlist::parse(&short).unwrap_or_else(|e| {
        panic!("compress of {text:?} gives {short:?}, which does not parse: {e}")
    });
    let mut a: Vec<&String> = names.iter().collect();
    let mut b = back.expand_limit(4096).unwrap_or_else(|e| {
        panic!("compress of {text:?} gives {short:?}, which does not expand: {e}")
    });
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    let b: Vec<&String> = b.iter().collect();
    assert_eq!(a, b, "{text:?} -> compress {short:?} names a different set");
}
