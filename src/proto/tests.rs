//! Codec tests: golden bytes from the manuals, round trips of every message
//! in every dialect, and hostile input.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::Decoder;

use super::*;

const ALL: [Dialect; 3] = [Dialect::P2000, Dialect::P2000u, Dialect::P2000L];

fn qid(p: u64) -> Qid {
    Qid {
        ty: qt::DIR,
        version: 7,
        path: p,
    }
}

fn stat() -> Stat {
    Stat {
        ty: 1,
        dev: 2,
        qid: qid(3),
        mode: dm::DIR | 0o555,
        atime: 4,
        mtime: 5,
        length: 0,
        name: "loadavg".into(),
        uid: "root".into(),
        gid: "root".into(),
        muid: "".into(),
        extension: "".into(),
        n_uid: 0,
        n_gid: 0,
        n_muid: NONUNAME,
    }
}

/// One instance of every T-message.
fn all_t() -> Vec<Tmessage> {
    use Tmessage::*;
    vec![
        Version(Tversion {
            msize: 8192,
            version: "9P2000.L".into(),
        }),
        Auth(Tauth {
            afid: 1,
            uname: "u".into(),
            aname: "/proc".into(),
            n_uname: 1000,
        }),
        Attach(Tattach {
            fid: 0,
            afid: NOFID,
            uname: "root".into(),
            aname: "".into(),
            n_uname: 0,
        }),
        Flush(Tflush { oldtag: 3 }),
        Walk(Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec!["1".into(), "status".into()],
        }),
        Open(Topen {
            fid: 1,
            mode: om::READ,
        }),
        Create(Tcreate {
            fid: 1,
            name: "x".into(),
            perm: 0o644,
            mode: 1,
            extension: "".into(),
        }),
        Read(Tread {
            fid: 1,
            offset: 1 << 40,
            count: 4096,
        }),
        Write(Twrite {
            fid: 1,
            offset: 2,
            data: Bytes::from_static(b"abc"),
        }),
        Clunk(Tclunk { fid: 1 }),
        Remove(Tremove { fid: 1 }),
        Stat(Tstat { fid: 1 }),
        Wstat(Twstat {
            fid: 1,
            stat: stat(),
        }),
        Statfs(Tstatfs { fid: 1 }),
        Lopen(Tlopen {
            fid: 1,
            flags: 0o100000,
        }),
        Lcreate(Tlcreate {
            fid: 1,
            name: "n".into(),
            flags: 2,
            mode: 0o600,
            gid: 5,
        }),
        Symlink(Tsymlink {
            fid: 1,
            name: "l".into(),
            symtgt: "/t".into(),
            gid: 5,
        }),
        Mknod(Tmknod {
            dfid: 1,
            name: "d".into(),
            mode: 1,
            major: 2,
            minor: 3,
            gid: 4,
        }),
        Rename(Trename {
            fid: 1,
            dfid: 2,
            name: "r".into(),
        }),
        Readlink(Treadlink { fid: 1 }),
        Getattr(Tgetattr {
            fid: 1,
            request_mask: getattr::ALL,
        }),
        Setattr(Tsetattr {
            fid: 1,
            attr: SetAttr {
                valid: 1,
                mode: 2,
                uid: 3,
                gid: 4,
                size: 5,
                atime_sec: 6,
                atime_nsec: 7,
                mtime_sec: 8,
                mtime_nsec: 9,
            },
        }),
        Xattrwalk(Txattrwalk {
            fid: 1,
            newfid: 2,
            name: "system.posix_acl_access".into(),
        }),
        Xattrcreate(Txattrcreate {
            fid: 1,
            name: "user.x".into(),
            attr_size: 9,
            flags: 0,
        }),
        Readdir(Treaddir {
            fid: 1,
            offset: 99,
            count: 8168,
        }),
        Fsync(Tfsync {
            fid: 1,
            datasync: 1,
        }),
        Lock(Tlock {
            fid: 1,
            lock_type: 1,
            flags: 0,
            start: 0,
            length: 10,
            proc_id: 42,
            client_id: "h".into(),
        }),
        Getlock(Tgetlock {
            fid: 1,
            lock_type: 1,
            start: 0,
            length: 10,
            proc_id: 42,
            client_id: "h".into(),
        }),
        Link(Tlink {
            dfid: 1,
            fid: 2,
            name: "k".into(),
        }),
        Mkdir(Tmkdir {
            dfid: 1,
            name: "m".into(),
            mode: 0o755,
            gid: 0,
        }),
        Renameat(Trenameat {
            olddirfid: 1,
            oldname: "a".into(),
            newdirfid: 2,
            newname: "b".into(),
        }),
        Unlinkat(Tunlinkat {
            dirfid: 1,
            name: "u".into(),
            flags: 0,
        }),
    ]
}

/// One instance of every R-message.
fn all_r() -> Vec<Rmessage> {
    use Rmessage::*;
    vec![
        Version(Rversion {
            msize: 8192,
            version: "9P2000".into(),
        }),
        Auth(Rauth {
            aqid: Qid {
                ty: qt::AUTH,
                version: 0,
                path: 0,
            },
        }),
        Attach(Rattach { qid: qid(1) }),
        Error(Rerror {
            ename: "file not found".into(),
            errno: 2,
        }),
        Flush,
        Walk(Rwalk {
            wqids: vec![qid(1), qid(2)],
        }),
        Open(Ropen {
            qid: qid(1),
            iounit: 0,
        }),
        Create(Rcreate {
            qid: qid(1),
            iounit: 0,
        }),
        Read(Rread {
            data: Bytes::from_static(b"0.00 0.01 0.05 1/123 4567\n"),
        }),
        Write(Rwrite { count: 3 }),
        Clunk,
        Remove,
        Stat(Rstat { stat: stat() }),
        Wstat,
        Lerror(Rlerror { ecode: 2 }),
        Statfs(Rstatfs {
            statfs: super::Statfs {
                ty: V9FS_MAGIC,
                bsize: 4096,
                blocks: 1,
                bfree: 2,
                bavail: 3,
                files: 4,
                ffree: 5,
                fsid: 6,
                namelen: 255,
            },
        }),
        Lopen(Rlopen {
            qid: qid(1),
            iounit: 0,
        }),
        Lcreate(Rlcreate {
            qid: qid(1),
            iounit: 0,
        }),
        Symlink(Rsymlink { qid: qid(1) }),
        Mknod(Rmknod { qid: qid(1) }),
        Rename,
        Readlink(Rreadlink {
            target: "/usr/bin/bash".into(),
        }),
        Getattr(Rgetattr {
            attr: Attr {
                valid: getattr::BASIC,
                qid: qid(9),
                mode: 0o100444,
                nlink: 1,
                size: 0,
                ..Attr::default()
            },
        }),
        Setattr,
        Xattrwalk(Rxattrwalk { size: 0 }),
        Xattrcreate,
        Readdir(Rreaddir { data: Bytes::new() }),
        Fsync,
        Lock(Rlock { status: 0 }),
        Getlock(Rgetlock {
            lock_type: 2,
            start: 0,
            length: 0,
            proc_id: 0,
            client_id: "".into(),
        }),
        Link,
        Mkdir(Rmkdir { qid: qid(1) }),
        Renameat,
        Unlinkat,
    ]
}

fn t_in(m: &Tmessage, d: Dialect) -> bool {
    let t = m.msg_type();
    if t < 100 {
        d == Dialect::P2000L
    } else if matches!(
        m,
        Tmessage::Open(_) | Tmessage::Create(_) | Tmessage::Stat(_) | Tmessage::Wstat(_)
    ) {
        d != Dialect::P2000L
    } else {
        true
    }
}

fn r_in(m: &Rmessage, d: Dialect) -> bool {
    let t = m.msg_type();
    match m {
        Rmessage::Error(_) | Rmessage::Version(_) => true,
        Rmessage::Open(_) | Rmessage::Create(_) | Rmessage::Stat(_) | Rmessage::Wstat => {
            d != Dialect::P2000L
        }
        _ if t < 100 => d == Dialect::P2000L,
        _ => true,
    }
}

#[test]
fn every_t_message_round_trips_in_every_dialect() {
    for d in ALL {
        for m in all_t() {
            let f = Frame {
                tag: 5,
                msg: m.clone(),
            };
            if !t_in(&m, d) {
                assert!(f.to_bytes(d).is_err(), "{m:?} must not encode in {d}");
                continue;
            }
            let b = f.to_bytes(d).unwrap();
            assert_eq!(
                u32::from_le_bytes(b[..4].try_into().unwrap()) as usize,
                b.len()
            );
            let mut back = Frame::<Tmessage>::decode(b, d).unwrap();
            // 9P2000 carries no n_uname/extension: they decode as defaults.
            if d == Dialect::P2000 {
                match (&mut back.msg, &m) {
                    (Tmessage::Auth(a), Tmessage::Auth(o)) => a.n_uname = o.n_uname,
                    (Tmessage::Attach(a), Tmessage::Attach(o)) => a.n_uname = o.n_uname,
                    (Tmessage::Wstat(a), Tmessage::Wstat(o)) => {
                        a.stat.n_uid = o.stat.n_uid;
                        a.stat.n_gid = o.stat.n_gid;
                        a.stat.n_muid = o.stat.n_muid;
                    }
                    _ => {}
                }
            }
            assert_eq!(back, f, "{d}");
        }
    }
}

#[test]
fn every_r_message_round_trips_in_every_dialect() {
    for d in ALL {
        for m in all_r() {
            let f = Frame {
                tag: 9,
                msg: m.clone(),
            };
            if !r_in(&m, d) {
                assert!(f.to_bytes(d).is_err(), "{m:?} must not encode in {d}");
                continue;
            }
            let b = f.to_bytes(d).unwrap();
            let mut back = Frame::<Rmessage>::decode(b, d).unwrap();
            if d == Dialect::P2000 {
                match (&mut back.msg, &m) {
                    (Rmessage::Error(a), Rmessage::Error(o)) => a.errno = o.errno,
                    (Rmessage::Stat(a), Rmessage::Stat(o)) => {
                        a.stat.n_uid = o.stat.n_uid;
                        a.stat.n_gid = o.stat.n_gid;
                        a.stat.n_muid = o.stat.n_muid;
                    }
                    _ => {}
                }
            }
            assert_eq!(back, f, "{d}");
        }
    }
}

/// The split encoding (header in the buffer, read data apart) puts the
/// same bytes on the wire as the whole one, for every reply, at every
/// threshold, and leaves the buffer as it was when a reply cannot encode.
#[test]
fn split_encoding_is_byte_identical() {
    let mut msgs = all_r();
    msgs.push(Rmessage::Read(Rread {
        data: Bytes::from(vec![7u8; 70_000]),
    }));
    msgs.push(Rmessage::Read(Rread { data: Bytes::new() }));
    for d in ALL {
        for m in &msgs {
            let f = Frame {
                tag: 4242,
                msg: m.clone(),
            };
            let whole = f.to_bytes(d);
            for min_shared in [0, 1, 5, 4096, usize::MAX] {
                let mut out = BytesMut::from(&b"prefix"[..]);
                match (f.encode_split(d, &mut out, min_shared), &whole) {
                    (Ok(rest), Ok(w)) => {
                        assert_eq!(&out[..6], b"prefix");
                        let mut got = out[6..].to_vec();
                        got.extend_from_slice(&rest.unwrap_or_default());
                        assert_eq!(got, w.to_vec(), "{m:?} in {d} at {min_shared}");
                    }
                    (Err(_), Err(_)) => assert_eq!(&out[..], b"prefix"),
                    (a, b) => panic!("{m:?} in {d}: split {a:?}, whole {b:?}"),
                }
            }
        }
    }
}

/// Tversion from version(5): size[4] Tversion tag[2]=NOTAG msize[4] version[s].
#[test]
fn golden_tversion() {
    let f = Frame {
        tag: NOTAG,
        msg: Tmessage::Version(Tversion {
            msize: 8192,
            version: "9P2000".into(),
        }),
    };
    let want: &[u8] = &[
        19, 0, 0, 0, 100, 0xff, 0xff, 0x00, 0x20, 0, 0, 6, 0, b'9', b'P', b'2', b'0', b'0', b'0',
    ];
    assert_eq!(&f.to_bytes(Dialect::P2000).unwrap()[..], want);
}

/// Twalk of two names: fid newfid nwname wname*.
#[test]
fn golden_twalk() {
    let f = Frame {
        tag: 1,
        msg: Tmessage::Walk(Twalk {
            fid: 1,
            newfid: 2,
            wnames: vec!["a".into(), "bc".into()],
        }),
    };
    let want: &[u8] = &[
        24, 0, 0, 0, 110, 1, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 1, 0, b'a', 2, 0, b'b', b'c',
    ];
    assert_eq!(&f.to_bytes(Dialect::P2000L).unwrap()[..], want);
}

/// Tattach in .L carries n_uname after aname; in 9P2000 it does not.
#[test]
fn golden_tattach_dialects() {
    let m = Tmessage::Attach(Tattach {
        fid: 0,
        afid: NOFID,
        uname: "u".into(),
        aname: "".into(),
        n_uname: 1000,
    });
    let f = Frame { tag: 1, msg: m };
    let l = f.to_bytes(Dialect::P2000L).unwrap();
    let want: &[u8] = &[
        24, 0, 0, 0, 104, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, b'u', 0, 0, 0xe8, 3, 0, 0,
    ];
    assert_eq!(&l[..], want);
    let p = f.to_bytes(Dialect::P2000).unwrap();
    assert_eq!(p.len(), want.len() - 4);
}

/// Rlerror(ENOENT) and the 9P2000.u Rerror string+errno.
#[test]
fn golden_errors() {
    let f = Frame {
        tag: 3,
        msg: Rmessage::Lerror(Rlerror { ecode: 2 }),
    };
    assert_eq!(
        &f.to_bytes(Dialect::P2000L).unwrap()[..],
        &[11, 0, 0, 0, 7, 3, 0, 2, 0, 0, 0]
    );
    let f = Frame {
        tag: 3,
        msg: Rmessage::Error(Rerror {
            ename: "no".into(),
            errno: 2,
        }),
    };
    assert_eq!(
        &f.to_bytes(Dialect::P2000u).unwrap()[..],
        &[15, 0, 0, 0, 107, 3, 0, 2, 0, b'n', b'o', 2, 0, 0, 0]
    );
    assert_eq!(
        &f.to_bytes(Dialect::P2000).unwrap()[..],
        &[11, 0, 0, 0, 107, 3, 0, 2, 0, b'n', b'o']
    );
}

/// Rstat carries the record size twice: n[2] then the record's own size[2].
#[test]
fn golden_rstat_double_size() {
    let st = Stat {
        name: "a".into(),
        ..Stat::default()
    };
    let b = Frame {
        tag: 0,
        msg: Rmessage::Stat(Rstat { stat: st.clone() }),
    }
    .to_bytes(Dialect::P2000)
    .unwrap();
    let n = u16::from_le_bytes([b[7], b[8]]) as usize;
    let inner = u16::from_le_bytes([b[9], b[10]]) as usize;
    assert_eq!(n, st.size(Dialect::P2000));
    assert_eq!(inner, n - 2);
    assert_eq!(b.len(), 7 + 2 + n);
}

#[test]
fn readdir_entries_round_trip_and_pack_respects_count() {
    let ents: Vec<DirEntry> = (0..50)
        .map(|i| DirEntry {
            qid: qid(i),
            offset: i + 1,
            ty: 4,
            name: format!("{i}"),
        })
        .collect();
    let (r, n) = Rreaddir::pack(&ents, 200);
    assert!(r.data.len() <= 200);
    assert!(n > 0 && n < 50);
    assert_eq!(DirEntry::decode_all(r.data).unwrap(), ents[..n].to_vec());
}

#[test]
fn stat_dir_read_round_trips() {
    for d in [Dialect::P2000, Dialect::P2000u] {
        let mut buf = BytesMut::new();
        let a = Stat {
            name: "x".into(),
            n_uid: 1,
            n_gid: 2,
            n_muid: 3,
            extension: "e".into(),
            ..stat()
        };
        a.encode_to(d, &mut buf).unwrap();
        a.encode_to(d, &mut buf).unwrap();
        let got = Stat::decode_dir(d, buf.freeze()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "x");
        if d == Dialect::P2000u {
            assert_eq!(got[0], a);
        }
    }
}

#[test]
fn version_negotiation_is_by_prefix() {
    assert_eq!(Dialect::negotiate("9P2000.L"), Some(Dialect::P2000L));
    assert_eq!(
        Dialect::negotiate("9P2000.L.Google.7"),
        Some(Dialect::P2000L)
    );
    assert_eq!(Dialect::negotiate("9P2000.u"), Some(Dialect::P2000u));
    assert_eq!(Dialect::negotiate("9P2000"), Some(Dialect::P2000));
    assert_eq!(Dialect::negotiate("9P2000.X"), Some(Dialect::P2000));
    assert_eq!(Dialect::negotiate("9P1"), None);
    assert_eq!(Dialect::negotiate(""), None);
}

#[test]
fn encoding_never_truncates() {
    let long = "x".repeat(70_000);
    let f = Frame {
        tag: 1,
        msg: Tmessage::Walk(Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec![long],
        }),
    };
    assert_eq!(
        f.to_bytes(Dialect::P2000L),
        Err(EncodeError::StringTooLong(70_000))
    );
    let mut buf = BytesMut::from(&b"keep"[..]);
    assert!(f.encode(Dialect::P2000L, &mut buf).is_err());
    assert_eq!(
        &buf[..],
        b"keep",
        "a failed encode leaves the buffer as it was"
    );
}

#[test]
fn framing_checks_size_before_allocating() {
    let mut c = FrameCodec::new(8192);
    let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 100][..]);
    assert!(matches!(c.decode(&mut b), Err(FrameError::TooBig { .. })));
    let mut b = BytesMut::from(&[3, 0, 0, 0][..]);
    assert!(matches!(c.decode(&mut b), Err(FrameError::TooShort(3))));
    let mut b = BytesMut::from(&[11, 0, 0, 0, 7, 3][..]);
    assert!(
        c.decode(&mut b).unwrap().is_none(),
        "a partial frame is not an error"
    );
    b.extend_from_slice(&[0, 2, 0, 0, 0, 42]);
    let f = c.decode(&mut b).unwrap().unwrap();
    assert_eq!(f.len(), 11);
    assert_eq!(&b[..], &[42]);
}

#[test]
fn hostile_counts_do_not_allocate() {
    // Twalk claiming 65535 names in a tiny frame.
    let raw: &[u8] = &[17, 0, 0, 0, 110, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff];
    assert!(Frame::<Tmessage>::decode(Bytes::from_static(raw), Dialect::P2000L).is_err());
    // Rread claiming 4 GiB of data.
    let raw: &[u8] = &[11, 0, 0, 0, 117, 1, 0, 0xff, 0xff, 0xff, 0xff];
    assert!(Frame::<Rmessage>::decode(Bytes::from_static(raw), Dialect::P2000L).is_err());
}

#[test]
fn trailing_bytes_and_wrong_dialect_are_errors() {
    let raw: &[u8] = &[12, 0, 0, 0, 120, 1, 0, 1, 0, 0, 0, 9];
    assert_eq!(
        Frame::<Tmessage>::decode(Bytes::from_static(raw), Dialect::P2000L),
        Err(DecodeError::TrailingBytes(1))
    );
    // Tlopen is .L only.
    let raw: &[u8] = &[15, 0, 0, 0, 12, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    assert!(matches!(
        Frame::<Tmessage>::decode(Bytes::from_static(raw), Dialect::P2000),
        Err(DecodeError::UnknownType { ty: 12, .. })
    ));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), d in 0usize..3) {
        let d = ALL[d];
        let b = Bytes::from(data);
        let _ = Frame::<Tmessage>::decode(b.clone(), d);
        let _ = Frame::<Rmessage>::decode(b.clone(), d);
        let _ = Stat::decode_dir(d, b.clone());
        let _ = DirEntry::decode_all(b);
    }

    #[test]
    fn random_bodies_with_valid_header_never_panic(t in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..256), d in 0usize..3) {
        let d = ALL[d];
        let mut f = Vec::with_capacity(body.len() + 7);
        f.extend_from_slice(&((body.len() + 7) as u32).to_le_bytes());
        f.push(t);
        f.extend_from_slice(&[1, 0]);
        f.extend_from_slice(&body);
        let b = Bytes::from(f);
        if let Ok(m) = Frame::<Tmessage>::decode(b.clone(), d) {
            // Whatever decodes re-encodes to the same bytes.
            prop_assert_eq!(m.to_bytes(d).unwrap(), b.clone());
        }
        if let Ok(m) = Frame::<Rmessage>::decode(b.clone(), d) {
            prop_assert_eq!(m.to_bytes(d).unwrap(), b);
        }
    }

    #[test]
    fn walk_names_round_trip(names in proptest::collection::vec("[^/]{0,40}", 0..16)) {
        let f = Frame { tag: 2, msg: Tmessage::Walk(Twalk { fid: 1, newfid: 2, wnames: names }) };
        let b = f.to_bytes(Dialect::P2000L).unwrap();
        prop_assert_eq!(Frame::<Tmessage>::decode(b, Dialect::P2000L).unwrap(), f);
    }
}
