//! The `gproc` command line.

/// Entry point of the `gproc` binary.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
