//! The `berth` binary: everything is in [`berth::cli`].

fn main() -> std::process::ExitCode {
    berth::cli::main()
}
