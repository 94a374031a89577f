#!/usr/bin/env python3
"""Interop check of a 9P2000 server that exports this machine's /proc, using the
`python-9p` package (plan9port's C codec, a tag-multiplexed synchronous client).

usage: python9p_check.py HOST PORT [ANAME]        (9P2000 only; ANAME default '')

Environment: P9_UNAME (default root), P9_MSIZE (default 65536), P9_TIMEOUT
(seconds per reply, default 10).

Checks: version, attach, walk, open, read loadavg to EOF in chunks, stat, a
directory read (whole stat records; lists loadavg, meminfo and pid 1), 1/status
against the local one, a walk error, a walk through the 'self' symlink,
concurrent (pipelined) requests on one connection, and a raw Tflush of an
unknown tag answered by Rflush. Each check
prints 'PASS name' or 'FAIL name: detail'; the last line is
'python9p_check: N passed, N failed'; exit 1 if any failed, 2 on usage errors.

Run it with $GPROC_PEERS/venv-python9p/bin/python (made by .ci/setup-peers.sh);
run with another python it re-executes itself there.
"""
import os
import re
import socket
import struct
import sys
import threading
import time

VENV_PY = os.path.join(os.environ.get("GPROC_PEERS", "/var/cache/gproc-peers"), "venv-python9p", "bin", "python")

try:
    import py9p
    from py9p import Client, OREAD, DMDIR, Tflush, Rflush, RemoteError
    py9p.decode_dir  # the p9fs fork of py9p also installs a top-level 'py9p', without this API
except Exception:  # noqa: BLE001
    if os.environ.get("_PYTHON9P_CHECK_REEXEC") != "1" and os.path.exists(VENV_PY):
        os.environ["_PYTHON9P_CHECK_REEXEC"] = "1"
        os.execv(VENV_PY, [VENV_PY] + sys.argv)
    sys.stderr.write("python9p_check: cannot import the python-9p package; run .ci/setup-peers.sh "
                     "and use %s\n" % VENV_PY)
    sys.exit(2)

QTDIR = 0x80
MAX_READ_BYTES = 64 << 20
MAX_RPCS = 200000


class CheckFailed(Exception):
    pass


def need(cond, detail):
    if not cond:
        raise CheckFailed(detail)


class Harness:
    def __init__(self, host, port, aname):
        self.host, self.port, self.aname = host, port, aname
        self.uname = os.environ.get("P9_UNAME", "root")
        self.msize = int(os.environ.get("P9_MSIZE", "65536"))
        self.timeout = float(os.environ.get("P9_TIMEOUT", "10"))
        self.passed = self.failed = 0
        self.dead = None
        self.c = None
        self.next_fid = 100

    def run(self, name, fn):
        if self.dead:
            self.failed += 1
            print("FAIL %s: not run, the connection was lost (%s)" % (name, self.dead), flush=True)
            return False
        try:
            detail = fn()
        except CheckFailed as e:
            self.failed += 1
            print("FAIL %s: %s" % (name, e), flush=True)
            return False
        except (socket.timeout, TimeoutError):
            self.failed += 1
            self.dead = "timeout"
            print("FAIL %s: no reply within %gs" % (name, self.timeout), flush=True)
            return False
        except (EOFError, OSError) as e:
            self.failed += 1
            self.dead = "%s: %s" % (type(e).__name__, e)
            print("FAIL %s: connection lost: %s" % (name, self.dead), flush=True)
            return False
        except Exception as e:  # noqa: BLE001 - any client/server error is a failure
            self.failed += 1
            cause = " (%s: %s)" % (type(e.__cause__).__name__, e.__cause__) if e.__cause__ else ""
            print("FAIL %s: %s: %s%s" % (name, type(e).__name__, e, cause), flush=True)
            if "connection failed" in str(e) or "closed" in str(e):
                self.dead = str(e)
            return False
        self.passed += 1
        print("PASS %s%s" % (name, ": " + detail if detail else ""), flush=True)
        return True

    def fid(self):
        self.next_fid += 1
        return self.next_fid

    def clunk_quiet(self, fid):
        try:
            self.c.clunk(fid)
        except Exception:  # noqa: BLE001
            pass

    def read_all(self, fid, chunk):
        data, off, n = b"", 0, 0
        while True:
            d = self.c.read(fid, count=chunk, offset=off)
            need(len(d) <= chunk, "Rread returned %d bytes for a Tread of %d" % (len(d), chunk))
            if not d:
                return data
            data += d
            off += len(d)
            n += 1
            need(len(data) <= MAX_READ_BYTES and n < MAX_RPCS, "no EOF after %d bytes" % len(data))

    def read_path(self, path, chunk, fid=None):
        fid = fid or self.fid()
        qids = self.c.walk(0, fid, path)
        need(len(qids) == len([p for p in path.split("/") if p]), "partial walk to %s" % path)
        try:
            self.c.open(fid, int(OREAD))
            return self.read_all(fid, chunk), qids[-1]
        finally:
            self.clunk_quiet(fid)

    # ------------------------------------------------------------ checks
    def c_version(self):
        self.c = Client.connect_tcp(self.host, self.port, timeout=self.timeout, msize=self.msize)
        r = self.c.negotiate()
        need(r.version == "9P2000", "asked 9P2000, server answered %r" % r.version)
        need(4096 <= r.msize <= self.msize, "Rversion msize %d not in [4096, %d]" % (r.msize, self.msize))
        return "%s msize %d" % (r.version, r.msize)

    def c_attach(self):
        q = self.c.attach(fid=0, uname=self.uname, aname=self.aname)
        need(q.type & QTDIR, "root qid.type %#x is not QTDIR" % q.type)
        self.root_qid = q
        return "root qid path %#x" % q.path

    def c_walk(self):
        qids = self.c.walk(0, 1, "loadavg")
        need(len(qids) == 1 and not qids[0].type & QTDIR, "walk loadavg gave %r" % (qids,))
        self.loadavg_qid = qids[0]
        return "qid path %#x" % qids[0].path

    def c_open(self):
        q, iounit = self.c.open(1, int(OREAD))
        need(q.path == self.loadavg_qid.path, "Ropen qid.path %#x != walk qid.path %#x" % (q.path, self.loadavg_qid.path))
        need(iounit <= self.c.msize - 24, "iounit %d > msize - IOHDRSZ" % iounit)
        return "iounit %d" % iounit

    def c_read(self):
        text = self.read_all(1, 7).decode()
        local = open("/proc/loadavg").read()
        need(re.match(r"^\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/\d+ \d+\n$", text),
             "remote loadavg %r does not look like /proc/loadavg" % text)
        need(len(text.split()) == len(local.split()), "field count %d, local %d" % (len(text.split()), len(local.split())))
        return text.strip()

    def c_stat(self):
        d = self.c.stat(1)
        self.clunk_quiet(1)
        lst = os.lstat("/proc/loadavg")
        need(d.name == "loadavg", "stat name %r" % d.name)
        need(d.qid.path == self.loadavg_qid.path, "stat qid.path %#x != walk qid.path" % d.qid.path)
        need(not d.mode & DMDIR, "mode %#x has DMDIR" % d.mode)
        need(d.mode & 0o777 == lst.st_mode & 0o777, "perm %o, local %o" % (d.mode & 0o777, lst.st_mode & 0o777))
        need(d.length == lst.st_size, "length %d, local %d" % (d.length, lst.st_size))
        return "mode %#x length %d uid %s" % (d.mode, d.length, d.uid)

    def c_dirread(self):
        before = {int(x) for x in os.listdir("/proc") if x.isdigit()}
        self.c.walk(0, 2, [])
        self.c.open(2, int(OREAD))
        names, ents, off, n = [], {}, 0, 0
        try:
            while True:
                buf = self.c.read(2, count=600, offset=off)
                if not buf:
                    break
                i = 0
                while i < len(buf):
                    need(len(buf) - i >= 2, "directory read ends inside a stat size field")
                    (size,) = struct.unpack_from("<H", buf, i)
                    need(i + 2 + size <= len(buf), "stat record split across reads")
                    d = py9p.decode_dir(buf[i:i + 2 + size])
                    names.append(d.name)
                    ents[d.name] = d
                    i += 2 + size
                off += len(buf)
                n += 1
                need(n < MAX_RPCS, "directory read does not end")
        finally:
            self.clunk_quiet(2)
        after = {int(x) for x in os.listdir("/proc") if x.isdigit()}
        need(len(names) == len(set(names)), "duplicate names")
        need("." not in names and ".." not in names, "a 9P2000 directory read must not list . or ..")
        for want in ("loadavg", "meminfo", "1"):
            need(want in names, "root listing lacks %r (%d entries)" % (want, len(names)))
        need(ents["1"].mode & DMDIR, "'1' mode %#x lacks DMDIR" % ents["1"].mode)
        listed = {int(x) for x in names if x.isdigit()}
        missing = sorted((before & after) - listed)
        need(not missing, "%d local pids are missing: %s" % (len(missing), missing[:10]))
        return "%d entries in %d reads, %d pids" % (len(names), n, len(listed))

    def c_status(self):
        data, _ = self.read_path("1/status", 100)
        name = next((ln for ln in data.decode().splitlines() if ln.startswith("Name:")), None)
        lname = next((ln for ln in open("/proc/1/status").read().splitlines() if ln.startswith("Name:")), None)
        need(name == lname, "remote %r, local %r" % (name, lname))
        return name.replace("\t", " ")

    def c_walk_error(self):
        try:
            self.c.walk(0, 3, "no-such-file.gproc-check")
        except RemoteError as e:
            need(str(e), "empty Rerror string")
            # the failed walk's newfid is not in use
            self.c.walk(0, 3, "meminfo")
            self.clunk_quiet(3)
            return "Rerror %r" % str(e)
        self.clunk_quiet(3)
        raise CheckFailed("walk to a missing name succeeded")

    def c_walk_symlink(self):
        # 9P2000 has no symlinks, so a 9P2000 client cannot follow /proc/self itself: walking
        # through it must reach the target (the py9p reference server does)
        data, _ = self.read_path("self/status", 4096)
        need(re.search(r"^Pid:\s+\d+$", data.decode(), re.M), "self/status has no Pid line: %r" % data[:60])
        return "self/status of pid %s" % re.search(r"^Pid:\s+(\d+)$", data.decode(), re.M).group(1)

    def c_pipelined(self):
        # several requests in flight at once on one connection, answered by tag
        files = ["loadavg", "meminfo", "uptime", "1/status", "version", "1/stat", "stat", "1/cmdline"]
        errors, results = [], {}

        def worker(i, path):
            try:
                fid = 200 + i
                for _ in range(5):
                    data, _ = self.read_path(path, 1024, fid=fid)
                    need(data, "%s read empty" % path)
                results[path] = len(data)
            except Exception as e:  # noqa: BLE001
                errors.append("%s: %s: %s" % (path, type(e).__name__, e))

        ts = [threading.Thread(target=worker, args=(i, p)) for i, p in enumerate(files)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(self.timeout * 3)
        need(not any(t.is_alive() for t in ts), "requests still unanswered after %gs" % (self.timeout * 3))
        need(not errors, "; ".join(errors[:3]))
        return "%d threads x 5 walk/open/read/clunk" % len(files)

    def c_flush(self):
        r = self.c.rpc(Tflush(oldtag=77))
        need(isinstance(r, Rflush), "Tflush(unknown tag) answered by %s" % type(r).__name__)
        return "Rflush tag %d" % r.tag

    def main(self):
        print("python9p_check: 9P2000 %s:%d aname=%r uname=%r" % (self.host, self.port, self.aname, self.uname))
        t0 = time.time()
        ok = self.run("version", self.c_version) and self.run("attach", self.c_attach)
        if ok:
            if self.run("walk", self.c_walk) and self.run("open", self.c_open):
                self.run("read-loadavg", self.c_read)
                self.run("stat", self.c_stat)
            self.run("dir-read", self.c_dirread)
            self.run("read-1-status", self.c_status)
            self.run("walk-error", self.c_walk_error)
            self.run("walk-through-symlink", self.c_walk_symlink)
            self.run("pipelined", self.c_pipelined)
            self.run("flush-unknown-tag", self.c_flush)
        if self.c is not None:
            self.c.close()
        print("python9p_check: against %s:%d took %.1fs" % (self.host, self.port, time.time() - t0))
        print("python9p_check: %d passed, %d failed" % (self.passed, self.failed))
        return 1 if self.failed else 0


def main():
    if len(sys.argv) not in (3, 4):
        sys.stderr.write("usage: python9p_check.py HOST PORT [ANAME]\n")
        return 2
    return Harness(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else "").main()


if __name__ == "__main__":
    sys.exit(main())
