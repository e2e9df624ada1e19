fn main() -> std::process::ExitCode {
    gatekeeper::run(std::env::args_os())
}
