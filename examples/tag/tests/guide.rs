//! docs/GUIDE.md walks through this crate file by file. Every code block it marks with
//! `<!-- guide: PATH -->` is the next part of PATH, so that its blocks, one after the
//! other, are the whole file: what a reader copies is exactly what compiles and runs
//! here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository")
}

/// The blocks after a marker line, by the marker's text, in order.
fn blocks(guide: &str, marker: &str) -> BTreeMap<String, String> {
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.strip_prefix(marker) else {
            continue;
        };
        let key = rest.trim_end_matches("-->").trim().to_owned();
        let fence = lines.next().expect("a code block after the marker");
        assert!(fence.starts_with("```"), "a code block after {line:?}");
        let text = found.entry(key).or_default();
        for code in lines.by_ref() {
            if code == "```" {
                break;
            }
            text.push_str(code);
            text.push('\n');
        }
    }
    found
}

#[test]
fn the_guide_shows_every_file_of_the_example_whole_and_as_it_is() {
    let root = repo();
    let guide = std::fs::read_to_string(root.join("docs/GUIDE.md")).expect("docs/GUIDE.md");
    let files = blocks(&guide, "<!-- guide:");
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        [
            "examples/tag/src/lib.rs",
            "examples/tag/src/main.rs",
            "examples/tag/tag.toml",
            "examples/tag/web/index.html",
        ]
    );
    for (path, shown) in &files {
        let actual = std::fs::read_to_string(root.join(path)).expect("the file");
        if *shown != actual {
            let line = shown
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .map_or_else(|| "the end".to_owned(), |i| format!("line {}", i + 1));
            panic!("docs/GUIDE.md shows {path} differently from the file, from {line} on");
        }
    }
}

#[test]
fn the_guides_dependencies_are_the_examples() {
    let root = repo();
    let guide = std::fs::read_to_string(root.join("docs/GUIDE.md")).expect("docs/GUIDE.md");
    let shown = blocks(&guide, "<!-- guide-dependencies")
        .remove("")
        .expect("the dependencies block");
    let names = |toml: &str| -> Vec<String> {
        toml.lines()
            .skip_while(|l| l.trim() != "[dependencies]")
            .skip(1)
            .take_while(|l| !l.starts_with('['))
            .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.trim().to_owned()))
            .collect()
    };
    let manifest =
        std::fs::read_to_string(root.join("examples/tag/Cargo.toml")).expect("Cargo.toml");
    assert_eq!(names(&shown), names(&manifest));
    assert_eq!(names(&shown), ["centrum", "serde"]);
}
