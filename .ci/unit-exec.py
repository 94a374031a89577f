#!/usr/bin/env python3
"""Prints, as one shell-quoted command line, how systemd would run one of a
unit's Exec lines: the line's command with the unit's environment
(Environment=, then EnvironmentFile=, which overrides it) expanded as
systemd expands it, run as the unit's User=/Group= with its capability
bounding and ambient sets, NoNewPrivileges= and LimitNOFILE=, through
prlimit, setpriv and env -i. For hosts where systemd is not PID 1
(.ci/package-test.sh); the Exec line itself is taken from the file, never
retyped.

    unit-exec.py UNIT KEY [VAR=VALUE...]   # KEY: ExecStart, ExecStartPre, ExecReload
    unit-exec.py UNIT --get KEY            # a plain setting (RuntimeDirectory...)

Extra VAR=VALUE pairs stand for what systemd itself sets (MAINPID).
"""
import re
import resource
import shlex
import sys


def settings(path):
    """[Service]/[Unit] settings as (key, value) pairs, in file order."""
    out, cont = [], None
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if cont is not None:
            line = cont + line
            cont = None
        if line.endswith("\\"):
            cont = line[:-1] + " "
            continue
        s = line.strip()
        if not s or s[0] in "#;" or s.startswith("["):
            continue
        k, _, v = s.partition("=")
        out.append((k.strip(), v.strip()))
    return out


def environment(pairs):
    env = {}
    for k, v in pairs:
        if k == "Environment":
            for a in shlex.split(v):
                n, _, val = a.partition("=")
                env[n] = val
    for k, v in pairs:
        if k == "EnvironmentFile":
            optional = v.startswith("-")
            p = v.lstrip("-")
            try:
                lines = open(p, encoding="utf-8").read().splitlines()
            except FileNotFoundError:
                if optional:
                    continue
                sys.exit(f"{p}: EnvironmentFile= is missing")
            for line in lines:
                line = line.strip()
                if not line or line[0] in "#;":
                    continue
                n, _, val = line.partition("=")
                val = val.strip()
                if len(val) >= 2 and val[0] == val[-1] and val[0] in "\"'":
                    val = val[1:-1]
                env[n.strip()] = val
    return env


def expand(cmdline, env):
    """systemd.service(5) "Command lines": a word that is exactly $VAR
    becomes the variable's whitespace-separated words; ${VAR} (and $VAR
    inside a word) is replaced as one word."""
    words = []
    for w in shlex.split(cmdline):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            words.extend(env.get(m.group(1), "").split())
            continue
        words.append(
            re.sub(
                r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
                lambda m: env.get(m.group(1) or m.group(2), ""),
                w,
            )
        )
    return words


def caps(value):
    return ",".join("+" + c.lower().removeprefix("cap_") for c in value.split())


def main():
    unit, key, *extra = sys.argv[1:]
    pairs = settings(unit)
    get = dict(pairs)
    if key == "--get":
        print(get.get(extra[0], ""))
        return
    lines = [v for k, v in pairs if k == key]
    if len(lines) != 1:
        sys.exit(f"{unit}: expected one {key}=, found {len(lines)}")
    line = lines[0]
    if line[:1] in "@+!:":
        sys.exit(f"{unit}: {key}= prefix {line[0]!r} is not supported here")
    line = line.lstrip("-")
    env = environment(pairs)
    run_env = dict(env)
    for a in extra:
        n, _, v = a.partition("=")
        env[n] = v
    argv = expand(line, env)

    cmd = []
    if "LimitNOFILE" in get:
        n = int(get["LimitNOFILE"])
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and n > hard:
            # A container without CAP_SYS_RESOURCE cannot raise it.
            print(f"unit-exec: LimitNOFILE={n} above this host's hard limit, using {hard}", file=sys.stderr)
            n = hard
        cmd += ["prlimit", f"--nofile={n}:{n}", "--"]
    cmd += ["setpriv"]
    user, group = get.get("User"), get.get("Group")
    if user:
        cmd += [f"--reuid={user}", f"--regid={group or user}", "--init-groups"]
    elif group:
        cmd += [f"--regid={group}", "--clear-groups"]
    if "CapabilityBoundingSet" in get:
        cmd += ["--bounding-set=-all" + ("," + caps(get["CapabilityBoundingSet"]) if get["CapabilityBoundingSet"] else "")]
    if get.get("AmbientCapabilities"):
        c = caps(get["AmbientCapabilities"])
        cmd += [f"--inh-caps={c}", f"--ambient-caps={c}"]
    if get.get("NoNewPrivileges") in ("yes", "true", "1", "on"):
        cmd += ["--no-new-privs"]
    cmd += ["--", "env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    if user:
        cmd += [f"USER={user}", f"LOGNAME={user}"]
    cmd += [f"{k}={v}" for k, v in run_env.items()]
    cmd += argv
    print(shlex.join(cmd))


main()
