//! The applications a back can host from config alone, by name.

mod arena;
mod bench_arena;

pub use arena::Arena;
pub use bench_arena::BenchArena;

use crate::App;

/// Every built-in application name, for config checks and error messages.
pub const BUILT_IN: &[&str] = &["arena", "bench-arena"];

/// A new instance of the built-in application `name`.
pub fn create(name: &str) -> Option<Box<dyn App>> {
    match name {
        "arena" => Some(Box::new(Arena::new())),
        "bench-arena" => Some(Box::new(BenchArena::new())),
        _ => None,
    }
}

/// Checks that every channel of `config` names a built-in application.
///
/// # Errors
/// One line per unknown application, naming the config field.
pub fn check(config: &centrum_config::Config) -> Result<(), String> {
    let problems: Vec<String> = config
        .backs
        .iter()
        .enumerate()
        .flat_map(|(b, back)| {
            back.channels
                .iter()
                .enumerate()
                .map(move |(c, ch)| (b, c, ch))
        })
        .filter(|(_, _, ch)| !BUILT_IN.contains(&ch.app.as_str()))
        .map(|(b, c, ch)| {
            format!(
                "backs[{b}].channels[{c}].app: unknown application {:?} (built in: {})",
                ch.app,
                BUILT_IN.join(", ")
            )
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
