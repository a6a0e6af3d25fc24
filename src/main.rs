use std::process::ExitCode;

fn main() -> ExitCode {
    synthscan::cli::main()
}
