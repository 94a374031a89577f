#!/usr/bin/env python3
"""Interop check of a 9P server that exports this machine's /proc, using the
py9p client bundled in the `p9fs` wheel (py9p.py9p.Client: synchronous, one
request at a time, speaks 9P2000, 9P2000.u and a minimal 9P2000.L).

usage: py9p_check.py HOST PORT DIALECT ANAME
       DIALECT: 9P2000 | 9P2000.u | 9P2000.L      ANAME: e.g. /proc for diod, '' for py9p

Environment: P9_UNAME (default root), P9_MSIZE (default 65536), P9_TIMEOUT
(seconds per reply, default 10), P9_CHATTY=1 to trace messages.

Everything read is compared with the local /proc (the server must export this
machine's /proc). Each check prints 'PASS name' or 'FAIL name: detail'; the
last line is 'py9p_check: N passed, N failed'; the exit status is 1 if any
check failed, 2 on usage or setup errors.

Run it with the p9fs venv's python ($GPROC_PEERS/venv-p9fs/bin/python, made by
.ci/setup-peers.sh); run with another python it re-executes itself there.
"""
import os
import re
import socket
import stat as st
import struct
import sys
import time

VENV_PY = os.path.join(os.environ.get("GPROC_PEERS", "/var/cache/gproc-peers"), "venv-p9fs", "bin", "python")

try:
    from py9p import py9p
    py9p.Client  # python-9p also installs a top-level 'py9p' without this module
except Exception:  # noqa: BLE001
    if os.environ.get("_PY9P_CHECK_REEXEC") != "1" and os.path.exists(VENV_PY):
        os.environ["_PY9P_CHECK_REEXEC"] = "1"
        os.execv(VENV_PY, [VENV_PY] + sys.argv)
    sys.stderr.write("py9p_check: cannot import py9p.py9p (the p9fs wheel); run .ci/setup-peers.sh "
                     "and use %s\n" % VENV_PY)
    sys.exit(2)

ENOENT = 2
DT_DIR, DT_REG, DT_LNK = 4, 8, 10
QTDIR, QTSYMLINK = 0x80, 0x02
DMDIR = 0x80000000
DMSYMLINK = 0x02000000
NOFID = 0xFFFFFFFF
MAX_READ_BYTES = 64 << 20   # a /proc file bigger than this means the server ignores offsets
MAX_RPCS = 200000


class CheckFailed(Exception):
    pass


def need(cond, detail):
    if not cond:
        raise CheckFailed(detail)


class Harness:
    def __init__(self, host, port, dialect, aname):
        self.host, self.port, self.aname = host, port, aname
        self.ver = py9p.Version.from_str(dialect)
        self.dotl = self.ver == py9p.Version.v9P2000L
        self.dotu = self.ver == py9p.Version.v9P2000u
        self.uname = os.environ.get("P9_UNAME", "root")
        self.msize = int(os.environ.get("P9_MSIZE", "65536"))
        self.timeout = float(os.environ.get("P9_TIMEOUT", "10"))
        self.chatty = int(os.environ.get("P9_CHATTY", "0"))
        self.passed = self.failed = 0
        self.next_fid = 100
        self.c = None
        self.dead = None
        self.sock = None
        self.root_qid = None
        self.qids = {}  # path -> qid.path, for the uniqueness check

    # ------------------------------------------------------------ reporting
    def fail(self, name, msg):
        """Report a failed check; names listed in $P9_XFAIL (comma-separated) are
        expected failures of a known peer quirk and do not count."""
        if name in [x for x in os.environ.get("P9_XFAIL", "").split(",") if x]:
            print("XFAIL %s: %s" % (name, msg), flush=True)
            return
        self.failed += 1
        print("FAIL %s: %s" % (name, msg), flush=True)

    def run(self, name, fn, *args):
        """Run one check. fn returns an optional detail string or raises."""
        if self.dead:
            self.fail(name, "not run, the connection was lost (%s)" % self.dead)
            return False
        try:
            detail = fn(*args)
        except CheckFailed as e:
            self.fail(name, "%s" % (e))
            return False
        except (socket.timeout, TimeoutError):
            self.dead = "timeout"
            self.fail(name, "no reply within %gs" % (self.timeout))
            return False
        except (py9p.EofError, OSError) as e:
            self.dead = "%s: %s" % (type(e).__name__, errtext(e))
            self.fail(name, "connection lost: %s" % (self.dead))
            return False
        except Exception as e:  # noqa: BLE001 - any client/server error is a failure
            self.fail(name, "%s: %s" % (type(e).__name__, errtext(e)))
            return False
        self.passed += 1
        print("PASS %s%s" % (name, ": " + detail if detail else ""), flush=True)
        return True

    # ------------------------------------------------------------ helpers
    def fid(self):
        self.next_fid += 1
        return self.next_fid

    def walk(self, names, start=None):
        """Walk from start (default the attach fid) to a new fid; returns (fid, qids)."""
        start = py9p.Client.ROOT if start is None else start
        nf = self.fid()
        r = self.c._walk(start, nf, names)
        need(len(r.wqid) == len(names), "walk %r: only %d of %d elements" % (names, len(r.wqid), len(names)))
        return nf, r.wqid

    def open(self, fid):
        if self.dotl:
            return self.c._lopen(fid, 0)  # O_RDONLY
        return self.c._open(fid, py9p.OREAD)

    def read_all(self, fid, chunk):
        """Read a file to EOF (an empty Rread) with Treads of `chunk` bytes at increasing offsets."""
        data, off, n = b"", 0, 0
        while True:
            r = self.c._read(fid, off, chunk)
            need(len(r.data) <= chunk, "Rread returned %d bytes for a Tread of %d" % (len(r.data), chunk))
            if not r.data:
                return data
            data += r.data
            off += len(r.data)
            n += 1
            need(len(data) <= MAX_READ_BYTES and n < MAX_RPCS,
                 "no EOF after %d bytes in %d reads (server ignores the offset?)" % (len(data), n))

    def read_file(self, path, chunk):
        names = [p for p in path.split("/") if p]
        fid, qids = self.walk(names)
        try:
            q = qids[-1]
            need(q.type & 0xFF & QTDIR == 0, "%s: qid.type %#x says directory" % (path, q.type & 0xFF))
            self.qids[path] = q.path
            self.open(fid)
            return self.read_all(fid, chunk), q
        finally:
            self.clunk_quiet(fid)

    def clunk_quiet(self, fid):
        try:
            self.c._clunk(fid)
        except Exception:  # noqa: BLE001
            pass

    def parse_stats(self, buf):
        """Strictly parse a 9P2000(.u) directory read: whole stat records back to back."""
        out, i = [], 0
        while i < len(buf):
            need(len(buf) - i >= 2, "directory read ends inside a stat size field")
            (size,) = struct.unpack_from("<H", buf, i)
            rec = buf[i + 2:i + 2 + size]
            need(len(rec) == size, "stat record split across reads (%d of %d bytes)" % (len(rec), size))
            j = 0
            typ, dev, qt, qv, qp, mode, atime, mtime, length = struct.unpack_from("<HIBIQIIIQ", rec, j)
            j += 39
            strs = []
            for _ in range(5 if self.dotu else 4):
                (n,) = struct.unpack_from("<H", rec, j)
                strs.append(rec[j + 2:j + 2 + n].decode("utf-8", "replace"))
                j += 2 + n
            nums = ()
            if self.dotu:
                nums = struct.unpack_from("<III", rec, j)
                j += 12
            need(j == size, "stat record for %r: size field %d but fields take %d" % (strs[0], size, j))
            out.append(dict(name=strs[0], uid=strs[1], gid=strs[2], muid=strs[3], qtype=qt, qvers=qv,
                            qpath=qp, mode=mode, length=length,
                            ext=strs[4] if self.dotu else None,
                            nuid=nums[0] if nums else None))
            i += 2 + size
        return out

    # ------------------------------------------------------------ checks
    def c_version(self):
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.settimeout(self.timeout)
        c = py9p.Client.__new__(py9p.Client)  # no login(): we do each step ourselves
        c.credentials = py9p.Credentials(user=self.uname)
        c.version = self.ver
        c.msize = self.msize
        c.fd = py9p.Sock(self.sock, c.dotu, self.chatty)
        self.c = c
        r = c._version(self.msize, self.ver.to_bytes())
        got = r.version.decode("utf-8", "replace") if isinstance(r.version, bytes) else r.version
        need(got == self.ver.value, "asked %s, server answered %r" % (self.ver.value, got))
        need(4096 <= r.msize <= self.msize, "Rversion msize %d not in [4096, %d]" % (r.msize, self.msize))
        c.msize = r.msize
        return "%s msize %d" % (got, r.msize)

    def c_auth(self):
        # Plan 9 clients ask for auth first; a server without auth answers Rerror.
        try:
            r = self.c._auth(py9p.Client.AFID, self.uname.encode(), self.aname.encode())
        except py9p.RpcError as e:
            return "no auth required (Rerror %s)" % errtext(e)
        self.clunk_quiet(py9p.Client.AFID)
        return "server offers auth (Rauth qid type %#x); attaching without it" % (r.aqid.type & 0xFF)

    def c_attach(self):
        r = self.c._attach(py9p.Client.ROOT, NOFID, self.uname.encode(), self.aname.encode())
        need(r.qid.type & 0xFF & QTDIR, "root qid.type %#x is not QTDIR" % (r.qid.type & 0xFF))
        self.root_qid = r.qid
        self.qids["/"] = r.qid.path
        return "root qid path %#x" % r.qid.path

    def c_walk_clone(self):
        nf = self.fid()
        r = self.c._walk(py9p.Client.ROOT, nf, [])
        need(len(r.wqid) == 0, "nwname=0 returned %d qids" % len(r.wqid))
        self.clone_fid = nf
        return None

    def c_listing(self):
        before = local_pids()
        fid, _ = self.walk([])
        names, types = [], {}
        try:
            self.open(fid)
            if self.dotl:
                off, n = 0, 0
                self.dirents = []
                while True:
                    r = self.c._readdir(fid, off, 512)  # small count: many resumes
                    if not r.stat:
                        break
                    for e in r.stat:
                        names.append(e.name)
                        types[e.name] = e.type & 0xFF
                        self.dirents.append(e)
                    off = r.stat[-1].offset
                    n += 1
                    need(n < MAX_RPCS, "readdir does not end")
            else:
                off, n = 0, 0
                while True:
                    r = self.c._read(fid, off, 512)  # records must never be split
                    if not r.data:
                        break
                    for d in self.parse_stats(r.data):
                        names.append(d["name"])
                        types[d["name"]] = d
                    off += len(r.data)
                    n += 1
                    need(n < MAX_RPCS, "directory read does not end")
        finally:
            self.clunk_quiet(fid)
        after = local_pids()
        real = [x for x in names if x not in (".", "..")]
        need(len(real) == len(set(real)), "duplicate names: %s" % sorted({x for x in real if real.count(x) > 1})[:10])
        if not self.dotl:
            need("." not in names and ".." not in names, "a 9P2000 directory read must not list . or ..")
        for want in ("loadavg", "meminfo", "1"):
            need(want in real, "root listing lacks %r (%d entries)" % (want, len(real)))
        listed = {int(x) for x in real if x.isdigit()}
        stable = before & after
        missing = sorted(stable - listed)
        need(not missing, "%d local pids alive during the listing are missing: %s" % (len(missing), missing[:10]))
        stray = listed - (before | after)
        need(len(stray) <= max(5, len(listed) // 10), "%d listed pids are not local pids: %s" % (len(stray), sorted(stray)[:10]))
        need(os.getpid() in listed, "our own pid %d is not listed" % os.getpid())
        if self.dotl:
            need(types.get("1") == DT_DIR, "readdir type of '1' is %r, want DT_DIR" % types.get("1"))
            need(types.get("loadavg") == DT_REG, "readdir type of 'loadavg' is %r, want DT_REG" % types.get("loadavg"))
            if "self" in types:
                need(types["self"] == DT_LNK, "readdir type of 'self' is %r, want DT_LNK" % types["self"])
        else:
            d1 = types["1"]
            need(d1["mode"] & DMDIR and d1["qtype"] & QTDIR, "'1' mode %#x qid.type %#x: not a directory" % (d1["mode"], d1["qtype"]))
            dl = types["loadavg"]
            need(not dl["mode"] & DMDIR, "'loadavg' mode %#x has DMDIR" % dl["mode"])
        return "%d entries, %d pids (local: %d)" % (len(real), len(listed), len(after))

    def c_readdir_resume(self):
        # v9fs resumes a directory from the d_off of any entry it already got, not only the last one.
        ents = [e for e in self.dirents]
        need(len(ents) >= 6, "too few entries to test (%d)" % len(ents))
        k = 3
        fid, _ = self.walk([])
        try:
            self.open(fid)
            r = self.c._readdir(fid, ents[k].offset, 512)
            need(r.stat, "Treaddir from the offset of entry %d returned nothing" % k)
            need(r.stat[0].name == ents[k + 1].name,
                 "resume from entry %d's offset gave %r, want %r" % (k, r.stat[0].name, ents[k + 1].name))
            r0 = self.c._readdir(fid, 0, 512)
            need(r0.stat and r0.stat[0].name == ents[0].name, "re-reading from offset 0 did not restart the listing")
        finally:
            self.clunk_quiet(fid)
        return None

    def c_loadavg(self):
        data, _ = self.read_file("loadavg", 5)
        text = data.decode()
        local = open("/proc/loadavg").read()
        pat = r"^\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/\d+ \d+\n$"
        need(re.match(pat, text), "remote loadavg %r does not look like /proc/loadavg" % text)
        need(len(text.split()) == len(local.split()), "field count %d, local %d" % (len(text.split()), len(local.split())))
        return text.strip()

    def c_meminfo(self):
        data, _ = self.read_file("meminfo", 100)
        local = open("/proc/meminfo").read()
        keys = [ln.split(":")[0] for ln in data.decode().splitlines()]
        lkeys = [ln.split(":")[0] for ln in local.splitlines()]
        need(keys == lkeys, "keys differ: remote %d keys, local %d; first difference at %r" % (
            len(keys), len(lkeys), next((a for a, b in zip(keys + [None], lkeys + [None]) if a != b), None)))
        rt = re.search(r"^MemTotal:\s+(\d+)", data.decode(), re.M)
        lt = re.search(r"^MemTotal:\s+(\d+)", local, re.M)
        need(rt and lt and rt.group(1) == lt.group(1), "MemTotal %s, local %s" % (rt and rt.group(1), lt and lt.group(1)))
        return "%d bytes, %d keys" % (len(data), len(keys))

    def c_status(self):
        # two walks: / -> 1, then 1 -> status (a walk from a non-root fid)
        d, q1 = self.walk(["1"])
        try:
            need(q1[0].type & 0xFF & QTDIR, "'1' qid.type %#x is not QTDIR" % (q1[0].type & 0xFF))
            self.qids["1"] = q1[0].path
            f, q = self.walk(["status"], start=d)
        finally:
            self.clunk_quiet(d)
        try:
            self.qids["1/status"] = q[0].path
            self.open(f)
            data = self.read_all(f, 64)
        finally:
            self.clunk_quiet(f)
        lines = data.decode().splitlines()
        local = open("/proc/1/status").read().splitlines()
        name = next((ln for ln in lines if ln.startswith("Name:")), None)
        lname = next((ln for ln in local if ln.startswith("Name:")), None)
        need(name == lname, "remote %r, local %r" % (name, lname))
        pid = next((ln for ln in lines if ln.startswith("Pid:")), None)
        need(pid is not None and pid.split() == ["Pid:", "1"], "Pid line %r" % pid)
        # the same file by a two-element walk
        data2, _ = self.read_file("1/status", 4096)
        need(data2.decode().splitlines()[0] == lname, "walk [1, status] read %r" % data2[:40])
        return name.replace("\t", " ")

    def c_stat(self):
        out = []
        for path, isdir in (("loadavg", False), ("1", True)):
            fid, qids = self.walk([path])
            try:
                q = qids[-1]
                lst = os.lstat("/proc/" + path)
                if self.dotl:
                    r = self.c._getattr(fid)
                    need(r.qid.path == q.path, "%s: getattr qid.path %#x != walk qid.path %#x" % (path, r.qid.path, q.path))
                    s = r.stat[0]
                    need(st.S_ISDIR(s.mode) == isdir and (isdir or st.S_ISREG(s.mode)),
                         "%s: getattr mode %o" % (path, s.mode))
                    need(s.uid == lst.st_uid, "%s: uid %d, local %d" % (path, s.uid, lst.st_uid))
                    need(s.gid == lst.st_gid, "%s: gid %d, local %d" % (path, s.gid, lst.st_gid))
                    if not isdir:
                        need(s.length == lst.st_size, "%s: size %d, local %d" % (path, s.length, lst.st_size))
                    out.append("%s mode %o" % (path, s.mode))
                else:
                    r = self.c._stat(fid)
                    need(len(r.stat) == 1, "%s: Rstat has %d records" % (path, len(r.stat)))
                    d = r.stat[0]
                    name = d.name.decode() if isinstance(d.name, bytes) else d.name
                    need(name == path, "%s: stat name %r" % (path, name))
                    need(d.qid.path == q.path, "%s: stat qid.path %#x != walk qid.path %#x" % (path, d.qid.path, q.path))
                    need(bool(d.mode & DMDIR) == isdir, "%s: mode %#x" % (path, d.mode))
                    need(bool(d.qid.type & 0xFF & QTDIR) == isdir, "%s: qid.type %#x" % (path, d.qid.type & 0xFF))
                    need(d.mode & 0o777 == lst.st_mode & 0o777, "%s: perm %o, local %o" % (path, d.mode & 0o777, lst.st_mode & 0o777))
                    if not isdir:
                        need(d.length == lst.st_size, "%s: length %d, local %d" % (path, d.length, lst.st_size))
                    if self.dotu:
                        need(d.uidnum == lst.st_uid, "%s: n_uid %d, local %d" % (path, d.uidnum, lst.st_uid))
                    out.append("%s mode %#x" % (path, d.mode))
            finally:
                self.clunk_quiet(fid)
        return ", ".join(out)

    def c_symlink_u(self):
        # 9P2000.u: a symlink's stat has DMSYMLINK and its target in the extension field
        fid, _ = self.walk(["self"])
        try:
            d = self.c._stat(fid).stat[0]
        finally:
            self.clunk_quiet(fid)
        ext = d.extension.decode() if isinstance(d.extension, bytes) else d.extension
        need(d.mode & DMSYMLINK, "'self' mode %#x lacks DMSYMLINK" % d.mode)
        need(ext.isdigit(), "'self' extension %r is not a pid" % ext)
        return "self -> %s" % ext

    def c_qid_version(self):
        # v9fs reads a file with qid.version 0 directly even under cache=loose
        fid, q = self.walk(["loadavg"])
        self.clunk_quiet(fid)
        need(q[0].vers == 0, "loadavg qid.version %#x, want 0" % q[0].vers)
        return None

    def c_qid_unique(self):
        paths = dict(self.qids)
        need(len(paths) >= 4, "too few qids collected: %r" % paths)
        rev = {}
        for p, q in paths.items():
            rev.setdefault(q, []).append(p)
        dup = [v for v in rev.values() if len(v) > 1]
        need(not dup, "same qid.path for %s" % dup)
        return "%d paths" % len(paths)

    def c_walk_enoent(self):
        nf = self.fid()
        try:
            self.c._walk(py9p.Client.ROOT, nf, ["no-such-file.gproc-check"])
        except py9p.RpcError as e:
            if self.dotl:
                need(e.args[0] == ENOENT, "Rlerror %r, want ENOENT (2)" % (e.args[0],))
            # the newfid of a failed walk is not in use: it can be walked again
            r = self.c._walk(py9p.Client.ROOT, nf, ["loadavg"])
            need(len(r.wqid) == 1, "reuse of the failed walk's newfid")
            self.clunk_quiet(nf)
            return "error %s" % errtext(e)
        self.clunk_quiet(nf)
        raise CheckFailed("walk to a missing name succeeded")

    def c_walk_dotdot(self):
        fid, q = self.walk([".."])
        self.clunk_quiet(fid)
        need(q[0].path == self.root_qid.path,
             "'..' at the root went to qid.path %#x, not the root %#x" % (q[0].path, self.root_qid.path))
        return None

    def c_clunk(self):
        fid, _ = self.walk(["loadavg"])
        self.open(fid)
        self.c._clunk(fid)
        try:
            self.c._read(fid, 0, 100)
        except py9p.RpcError as e:
            return "read after clunk: error %s" % errtext(e)
        raise CheckFailed("a clunked fid could still be read")

    def main(self):
        print("py9p_check: %s %s:%d aname=%r uname=%r" % (self.ver.value, self.host, self.port, self.aname, self.uname))
        t0 = time.time()
        if not self.run("version", self.c_version):
            return self.finish(t0)
        if not self.dotl:
            self.run("auth", self.c_auth)
        if not self.run("attach", self.c_attach):
            return self.finish(t0)
        self.run("walk-clone", self.c_walk_clone)
        listed = self.run("root-listing", self.c_listing)
        if self.dotl and listed:
            self.run("readdir-resume", self.c_readdir_resume)
        self.run("read-loadavg", self.c_loadavg)
        self.run("read-meminfo", self.c_meminfo)
        self.run("read-1-status", self.c_status)
        self.run("getattr" if self.dotl else "stat", self.c_stat)
        if self.dotu:
            self.run("stat-symlink", self.c_symlink_u)
        if self.dotl:
            self.run("qid-version-0", self.c_qid_version)
        self.run("qid-unique", self.c_qid_unique)
        self.run("walk-enoent", self.c_walk_enoent)
        self.run("walk-dotdot-at-root", self.c_walk_dotdot)
        self.run("clunk", self.c_clunk)
        return self.finish(t0)

    def finish(self, t0):
        try:
            self.sock.close()
        except Exception:  # noqa: BLE001
            pass
        print("py9p_check: %s against %s:%d took %.1fs" % (self.ver.value, self.host, self.port, time.time() - t0))
        print("py9p_check: %d passed, %d failed" % (self.passed, self.failed))
        return 1 if self.failed else 0


def errtext(e):
    """The server's error: an errno (Rlerror) or a string (Rerror)."""
    a = e.args[0] if e.args else e
    if isinstance(a, bytes):
        return repr(a.decode("utf-8", "replace"))
    if isinstance(a, int):
        return "errno %d (%s)" % (a, os.strerror(a))
    return str(a)


def local_pids():
    return {int(x) for x in os.listdir("/proc") if x.isdigit()}


def main():
    if len(sys.argv) != 5 or sys.argv[3] not in ("9P2000", "9P2000.u", "9P2000.L"):
        sys.stderr.write("usage: py9p_check.py HOST PORT 9P2000|9P2000.u|9P2000.L ANAME\n")
        return 2
    return Harness(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]).main()


if __name__ == "__main__":
    sys.exit(main())
