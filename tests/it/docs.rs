//! Manual pages and completions come from the clap definitions: every
//! subcommand `gproc --help` lists has a page, each page renders with
//! man(1), and the bash completion script parses and completes the
//! subcommands.

use std::process::Command;

use crate::common::*;

/// The subcommands `gproc --help` lists (without `help`).
fn subcommands() -> Vec<String> {
    let out = Command::new(gproc()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_subcommand_has_a_manual_page_that_renders() {
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new(gproc())
        .args(["man", "--dir"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let subs = subcommands();
    assert!(subs.len() >= 10, "{subs:?}");
    for page in
        std::iter::once("gproc".to_string()).chain(subs.iter().map(|s| format!("gproc-{s}")))
    {
        let path = dir.path().join(format!("{page}.1"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}.1 is not roff"
        );
        if !require("man (to render the pages)", have("man")) {
            continue;
        }
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "man -l {page}.1");
        assert!(
            shown.contains("NAME") && shown.contains(&page),
            "{page}:\n{shown}"
        );
    }
    // Options come from the definitions: a flag added to ps is documented.
    let ps = std::fs::read_to_string(dir.path().join("gproc-ps.1")).unwrap();
    for flag in ["\\-\\-arch", "\\-\\-json", "\\-\\-sort"] {
        assert!(ps.contains(flag), "gproc-ps.1 lacks {flag}");
    }
}

#[test]
fn the_bash_completion_parses_and_completes_subcommands() {
    let out = Command::new(gproc())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = dir_file(&out.stdout);
    let st = Command::new("bash")
        .arg("-n")
        .arg(&script.1)
        .status()
        .unwrap();
    assert!(st.success(), "bash -n of the completion script");
    // Complete `gproc p` in a bash that sourced it.
    let probe = format!(
        "source {}; COMP_WORDS=(gproc p); COMP_CWORD=1; COMP_LINE='gproc p'; COMP_POINT=7; \
         _gproc gproc p gproc; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.1.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(
        got.lines().any(|l| l == "ps"),
        "completions of `gproc p`: {got:?}"
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(gproc())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
}

/// `bytes` in a temporary file: (the directory, the file).
fn dir_file(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("gproc.bash");
    std::fs::write(&p, bytes).unwrap();
    (d, p)
}
