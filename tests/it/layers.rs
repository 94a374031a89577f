//! The crate doc's table of modules and allowed imports is the truth:
//! every library module is in it, and no module's code imports a module
//! its row does not allow. Test code (`tests.rs` files and `#[cfg(test)]`
//! modules) may reach across layers and is not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::common::repo;

/// Module -> modules it may import, from the `//! | [`m`] | ... | ... |`
/// rows of src/lib.rs's crate doc.
fn documented(lib: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | [`") else {
            continue;
        };
        let Some((name, rest)) = row.split_once("`]") else {
            continue;
        };
        let cells: Vec<&str> = rest.split('|').map(str::trim).collect();
        // rest = " | job | imports |" -> ["", "job", "imports", ""]
        let imports = cells.iter().rev().find(|c| !c.is_empty()).copied();
        let allowed = imports
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().trim_matches('`').to_string())
            .filter(|s| !s.is_empty() && s != "nothing")
            .collect();
        out.insert(name.to_string(), allowed);
    }
    out
}

/// The library's modules, from the `pub mod` / `mod` lines of lib.rs.
fn declared(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect()
}

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_file() {
        out.push(p.to_path_buf());
        return;
    }
    let Ok(rd) = std::fs::read_dir(p) else { return };
    for e in rd.flatten() {
        let q = e.path();
        if q.is_dir() {
            rust_files(&q, out);
        } else if q.extension().is_some_and(|x| x == "rs") {
            out.push(q);
        }
    }
}

/// `crate::X` paths used by the non-test code of a file, with line numbers.
fn imports(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_use_group = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break; // test modules sit at the end of a file
        }
        if t.starts_with("//") {
            continue;
        }
        // `use crate::{a, b::c}` spread over lines.
        if in_use_group {
            for part in t.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != "self" {
                    out.push((i + 1, name));
                }
            }
            if t.contains("};") {
                in_use_group = false;
            }
            continue;
        }
        if t.starts_with("use crate::{") && !t.contains("};") {
            in_use_group = true;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((i + 1, name));
            }
        }
    }
    out
}

#[test]
fn every_module_imports_only_what_the_crate_doc_allows() {
    let root = repo();
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let table = documented(&lib);
    let mods = declared(&lib);
    let undocumented: Vec<_> = mods.iter().filter(|m| !table.contains_key(*m)).collect();
    assert!(
        undocumented.is_empty(),
        "modules missing from the crate doc's table in src/lib.rs: {undocumented:?}"
    );
    let stale: Vec<_> = table.keys().filter(|m| !mods.contains(*m)).collect();
    assert!(
        stale.is_empty(),
        "the crate doc's table names modules lib.rs does not declare: {stale:?}"
    );
    let mut wrong = Vec::new();
    for (m, allowed) in &table {
        let dir = root.join("src").join(m);
        let file = root.join("src").join(format!("{m}.rs"));
        let mut files = Vec::new();
        rust_files(if dir.is_dir() { &dir } else { &file }, &mut files);
        assert!(!files.is_empty(), "no source for module {m}");
        for f in files {
            if f.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            for (line, used) in imports(&text) {
                if &used != m && mods.contains(&used) && !allowed.contains(&used) {
                    let rel = f.strip_prefix(&root).unwrap_or(&f).display().to_string();
                    wrong.push(format!("{rel}:{line}: {m} imports {used}"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports the crate doc does not allow (change the code, or the table in src/lib.rs with a reason):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_import_scanner_sees_groups_and_paths_but_not_comments_or_tests() {
    let src = "use crate::proto::Qid;\n// crate::tree in a comment\nuse crate::{\n    server::X,\n    sys,\n};\nlet x = crate::cache::f();\n#[cfg(test)]\nmod tests { use crate::tree; }\n";
    let got: Vec<String> = imports(src).into_iter().map(|(_, m)| m).collect();
    assert_eq!(got, ["proto", "server", "sys", "cache"]);
    let lib = "//! | [`proto`] | 9P | nothing |\n//! | [`tree`] | merged | `client`, `cache` |\npub mod proto;\nmod tree;\n";
    let t = documented(lib);
    assert!(t["proto"].is_empty());
    assert_eq!(
        t["tree"].iter().cloned().collect::<Vec<_>>(),
        ["cache", "client"]
    );
    assert_eq!(declared(lib).len(), 2);
}
