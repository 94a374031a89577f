fn main() -> std::process::ExitCode {
    gproc::cli::main()
}
