//! `gproc man` and `gproc completions`: manual pages and shell completions
//! generated from the clap definitions themselves, so they cannot drift
//! from `--help` (packages install them; see deploy/README.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

/// Options of `gproc man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write `gproc.1` and one `gproc-COMMAND.1` per
    /// subcommand into (created if missing).
    #[arg(long, default_value = "man")]
    dir: PathBuf,
}

/// Options of `gproc completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
}

/// Writes the page of `cmd` (named `name`) and of each of its
/// subcommands, `name-sub.1`, recursively; returns the files written.
fn write_pages(cmd: clap::Command, name: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let cmd = cmd.name(name.to_string()).bin_name(name.replace('-', " "));
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .with_context(|| format!("rendering the page of {name}"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        written.extend(write_pages(sub.clone(), &sub_name, dir)?);
    }
    Ok(written)
}

/// Runs `gproc man`.
pub fn run_man(a: ManArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let pages = write_pages(super::Cli::command(), "gproc", &a.dir)?;
    eprintln!(
        "gproc man: wrote {} pages to {} (read one with: man -l {})",
        pages.len(),
        a.dir.display(),
        a.dir.join("gproc.1").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `gproc completions`.
pub fn run_completions(a: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "gproc", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
