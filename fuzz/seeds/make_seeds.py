#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into fuzz/seeds/<target>/.

Seeds are valid inputs the fuzzer mutates from; each target's input layout
is described in its fuzz_targets/<target>.rs. Run from fuzz/:
    python3 seeds/make_seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
P2000, U, L = 0, 1, 2


def u8(v): return struct.pack('<B', v)
def u16(v): return struct.pack('<H', v)
def u32(v): return struct.pack('<I', v)
def u64(v): return struct.pack('<Q', v)
def s(v): b = v.encode() if isinstance(v, str) else v; return u16(len(b)) + b
def qid(ty=0x80, ver=0, path=1): return u8(ty) + u32(ver) + u64(path)


def stat(d, name='status', ext='', dotu_ids=(0, 0, 0xffffffff)):
    body = u16(0) + u32(0) + qid(0, 0, 7) + u32(0o444) + u32(1) + u32(2) + u64(0)
    body += s(name) + s('root') + s('root') + s('root')
    if d == U:
        body += s(ext) + u32(dotu_ids[0]) + u32(dotu_ids[1]) + u32(dotu_ids[2])
    return u16(len(body)) + body


def framed(d, ty, tag, body):
    # selector (dialect, framed mode) then type[1] tag[2] body
    return u8(d) + u8(ty) + u16(tag) + body


def stream(d, frames):
    # selector with the top bit (raw stream mode), then whole frames
    out = u8(0x80 | d)
    for ty, tag, body in frames:
        out += u32(7 + len(body)) + u8(ty) + u16(tag) + body
    return out


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def tmessages(d):
    n_uname = u32(1000) if d != P2000 else b''
    t = [
        (100, 0xffff, u32(8192) + s('9P2000.L')),
        (104, 1, u32(0) + u32(0xffffffff) + s('root') + s('/proc') + n_uname),
        (102, 1, u32(5) + s('u') + s('') + n_uname),
        (108, 2, u16(1)),
        (110, 3, u32(0) + u32(1) + u16(2) + s('1') + s('status')),
        (116, 4, u32(1) + u64(0) + u32(4096)),
        (118, 5, u32(1) + u64(0) + u32(3) + b'abc'),
        (120, 6, u32(1)),
        (122, 6, u32(1)),
    ]
    if d == L:
        t += [
            (12, 7, u32(1) + u32(0)),
            (24, 8, u32(1) + u64(0x3fff)),
            (40, 9, u32(1) + u64(0) + u32(8168)),
            (8, 10, u32(1)),
            (22, 11, u32(1)),
            (30, 12, u32(1) + u32(2) + s('system.posix_acl_access')),
            (52, 13, u32(1) + u8(1) + u32(0) + u64(0) + u64(10) + u32(42) + s('h')),
            (54, 14, u32(1) + u8(1) + u64(0) + u64(10) + u32(42) + s('h')),
            (26, 15, u32(1) + u32(1) + u32(2) + u32(3) + u32(4) + u64(5) + u64(6) + u64(7) + u64(8) + u64(9)),
            (74, 16, u32(1) + s('a') + u32(2) + s('b')),
        ]
    else:
        ext = s('') if d == U else b''
        st = stat(d)
        t += [
            (112, 7, u32(1) + u8(0)),
            (124, 8, u32(1)),
            (126, 9, u32(1) + u16(len(st)) + st),
            (114, 10, u32(1) + s('x') + u32(0o644) + u8(1) + ext),
        ]
    return t


def rmessages(d):
    r = [
        (101, 0xffff, u32(8192) + s(['9P2000', '9P2000.u', '9P2000.L'][d])),
        (105, 1, qid()),
        (111, 3, u16(2) + qid(0x80, 0, 1) + qid(0, 0, 2)),
        (117, 4, u32(26) + b'0.00 0.01 0.05 1/123 4567\n'),
        (119, 5, u32(3)),
        (121, 6, b''),
        (109, 2, b''),
    ]
    if d == L:
        attr = u64(0x7ff) + qid(0, 0, 9) + u32(0o100444) + u32(0) + u32(0) + b''.join(u64(i) for i in range(15))
        ent = qid(0x80, 0, 5) + u64(1) + u8(4) + s('1') + qid(0, 0, 6) + u64(2) + u8(8) + s('loadavg')
        r += [
            (7, 7, u32(2)),
            (13, 8, qid() + u32(0)),
            (25, 9, attr),
            (41, 10, u32(len(ent)) + ent),
            (9, 11, u32(0x01021997) + u32(4096) + u64(1) + u64(2) + u64(3) + u64(4) + u64(5) + u64(6) + u32(255)),
            (23, 12, s('/usr/bin/bash')),
            (55, 13, u8(2) + u64(0) + u64(0) + u32(0) + s('')),
            (31, 14, u64(0)),
        ]
    else:
        st = stat(d)
        errno = u32(2) if d == U else b''
        dirdata = stat(d, 'a') + stat(d, 'bb')
        r += [
            (107, 7, s('file not found') + errno),
            (113, 8, qid() + u32(0)),
            (125, 9, u16(len(st)) + st),
            (117, 10, u32(len(dirdata)) + dirdata),
        ]
    return r


for d in (P2000, U, L):
    for i, (ty, tag, body) in enumerate(tmessages(d)):
        write('tmessage', f'd{d}-{ty}-{i}', framed(d, ty, tag, body))
    write('tmessage', f'd{d}-stream', stream(d, tmessages(d)[:4]))
    for i, (ty, tag, body) in enumerate(rmessages(d)):
        write('rmessage', f'd{d}-{ty}-{i}', framed(d, ty, tag, body))
    write('rmessage', f'd{d}-stream', stream(d, rmessages(d)[:4]))

# readdir: selector (dialect; top bit = .L entries) then the payload.
for d in (P2000, U):
    write('readdir', f'stat-d{d}', u8(d) + stat(d, 'a') + stat(d, 'self', 'link') + stat(d, ''))
ents = b''
for i, (n, t) in enumerate([('.', 4), ('..', 4), ('1', 4), ('self', 10), ('loadavg', 8)]):
    ents += qid(0x80 if t == 4 else 0, 0, i + 10) + u64(i + 1) + u8(t) + s(n)
write('readdir', 'dirents', u8(0x80) + ents)

write('summary', 'example', b'''gproc-ps 1
hostname n17
arch x86_64
kernel 6.1.0-18-amd64
boot_time 1700000000
clk_tck 100
page_size 4096
uptime 12345.67
idle 98765.43
time 1700012345.678901
cpus 64
mem_total_kb 263921340
mem_free_kb 101234500
mem_available_kb 200123456
loadavg 0.52 0.58 0.59 2 1234
# pid ppid ruid euid user state utime stime rss vsize start threads comm argc argv...
p 1 0 0 0 root S 120 340 3000 170000000 5 1 systemd 2 /sbin/init splash
p 2 0 0 0 root S 0 0 0 0 5 1 kthreadd 0
p 4242 1 1000 1000 alice R 9000 12 51200 2147483648 81234 8 my\\sjob 3 ./my\\sjob --name \\-
p 4243 1 1000 1000 caf\xc3\xa9 Z 0 0 0 0 9 1 \\x1b\\x80 1 \\t\\n\\\\
end 4
''')

root = os.path.dirname(os.path.dirname(HERE))
for name in sorted(os.listdir(os.path.join(root, 'config'))):
    if name.endswith('.toml'):
        with open(os.path.join(root, 'config', name), 'rb') as f:
            write('config', name, f.read())
write('config', 'small', b'''[server]
listen = ["127.0.0.1:5640"]
auth = "none"

[[nodes]]
names = "n[0001-0004],login[1-2]"
address = "{name}:5640"

[cache]
default_ttl = "1s"
max_bytes = "256MiB"

[[cache.rule]]
path = "/*/status"
ttl = "2s"
''')

for i, h in enumerate(['n[0001-2000]', 'login1,n[1-3,7]', 'rack[1-4]n[01-32]', 'a,b,c', 'x[009-011]y[1-2]']):
    write('hostlist', f'h{i}', h.encode())
