//! The stock `centrum` binary: every command, with the built-in games (`arena`, the
//! demo, and `bench-arena`, the benchmark workload). A game's own binary is the same
//! line with `.app(...)` added (see the `centrum` library).

fn main() -> std::process::ExitCode {
    centrum::Cli::new().run()
}
