//! The tag binary: centrum with the tag game, its cluster config and its web page.
//! `cargo run --release -p tag -- up` starts it; every other centrum command works too.

use centrum::{Cli, Page};
use tag::Tag;

fn main() -> std::process::ExitCode {
    Cli::new()
        .app("tag", Tag::new)
        .default_config(include_str!("../tag.toml"))
        .page(Page::html("/", include_str!("../web/index.html")))
        .run()
}
