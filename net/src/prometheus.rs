//! The Prometheus text exposition (format 0.0.4) of a set of metrics: one HELP and TYPE
//! per name, its samples together, names and labels checked, values and text escaped.
//! The master renders the cluster's with it and each node its own (`ops`). No I/O.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt::Write as _;

use centrum_protocol::{Metric, MetricKind};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The samples of one metric name, with its one HELP and TYPE.
#[derive(Debug)]
struct Family {
    help: String,
    kind: MetricKind,
    /// Written with [`Exposition::own`]: reported metrics cannot add samples to it.
    sealed: bool,
    /// `{labels} value` of each sample, the name left out.
    samples: Vec<String>,
}

/// Families by name, so each name gets one HELP and one TYPE and its samples together;
/// rendered in name order.
#[derive(Debug, Default)]
pub struct Exposition {
    families: BTreeMap<String, Family>,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample of the renderer's own, whose name and labels the caller writes and
    /// so knows valid. Its family is sealed: [`Exposition::reported`] cannot join it.
    pub fn own(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricKind,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let family = self
            .families
            .entry(name.to_owned())
            .or_insert_with(|| Family {
                help: help.to_owned(),
                kind,
                sealed: true,
                samples: Vec::new(),
            });
        family.samples.push(sample(labels, value));
    }

    /// Adds a metric another party reported, with `first` labels before its own (the
    /// master adds `node="<id>"`). A metric that would make the exposition invalid (a bad
    /// name or label, a label given twice, a kind that contradicts an earlier sample, a
    /// sealed name) is left out, and false returned.
    pub fn reported(&mut self, metric: &Metric, first: &[(&str, &str)]) -> bool {
        if !valid_metric_name(&metric.name) {
            return false;
        }
        let mut labels = first.to_vec();
        for (key, value) in &metric.labels {
            if !valid_label_name(key) || labels.iter().any(|(seen, _)| seen == key) {
                return false;
            }
            labels.push((key.as_str(), value.as_str()));
        }
        let family = match self.families.entry(metric.name.clone()) {
            Entry::Occupied(entry) => {
                let family = entry.into_mut();
                if family.sealed || family.kind != metric.kind {
                    return false;
                }
                family
            }
            Entry::Vacant(entry) => entry.insert(Family {
                help: metric.help.clone(),
                kind: metric.kind,
                sealed: false,
                samples: Vec::new(),
            }),
        };
        family.samples.push(sample(&labels, metric.value));
        true
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, family) in &self.families {
            let kind = match family.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
            };
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for s in &family.samples {
                let _ = writeln!(out, "{name}{s}");
            }
        }
        out
    }
}

/// The exposition of `metrics` alone, each as reported (a node's own /metrics).
pub fn render(metrics: &[Metric]) -> String {
    let mut exp = Exposition::new();
    for metric in metrics {
        exp.reported(metric, &[]);
    }
    exp.render()
}

/// `{k="v",...} value`, or ` value` without labels.
fn sample(labels: &[(&str, &str)], value: f64) -> String {
    let mut out = String::new();
    if !labels.is_empty() {
        out.push('{');
        for (i, (key, val)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{key}=\"{}\"", escape_label_value(val));
        }
        out.push('}');
    }
    let _ = write!(out, " {}", format_value(value));
    out
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Rust's Display never uses an exponent and prints integers without ".0".
        value.to_string()
    }
}

/// HELP text escapes backslash and newline.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values escape backslash, double quote and newline.
fn escape_label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, and not `__`-prefixed (reserved for Prometheus itself).
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str, kind: MetricKind, labels: &[(&str, &str)], value: f64) -> Metric {
        Metric {
            name: name.into(),
            help: format!("Help of {name}."),
            kind,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        }
    }

    #[test]
    fn metrics_are_grouped_by_name_with_one_help_and_type() {
        let text = render(&[
            metric("centrum_b_total", MetricKind::Counter, &[("k", "1")], 3.0),
            metric("centrum_a", MetricKind::Gauge, &[], 0.25),
            metric("centrum_b_total", MetricKind::Counter, &[("k", "2")], 4.0),
        ]);
        assert_eq!(
            text,
            "# HELP centrum_a Help of centrum_a.\n\
             # TYPE centrum_a gauge\n\
             centrum_a 0.25\n\
             # HELP centrum_b_total Help of centrum_b_total.\n\
             # TYPE centrum_b_total counter\n\
             centrum_b_total{k=\"1\"} 3\n\
             centrum_b_total{k=\"2\"} 4\n"
        );
    }

    #[test]
    fn help_and_label_values_are_escaped() {
        assert_eq!(escape_help("a\\b\nc\"d"), "a\\\\b\\nc\"d");
        let text = render(&[Metric {
            help: "line one\nline two".into(),
            ..metric("centrum_h", MetricKind::Gauge, &[("k", "a\"b\\c\nd")], 1.0)
        }]);
        assert!(
            text.contains("# HELP centrum_h line one\\nline two\n"),
            "{text}"
        );
        assert!(
            text.contains("centrum_h{k=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn what_would_break_the_exposition_is_left_out() {
        let mut exp = Exposition::new();
        exp.own("centrum_up", "Up.", MetricKind::Gauge, &[], 1.0);
        let node = [("node", "n")];
        assert!(!exp.reported(&metric("bad name", MetricKind::Gauge, &[], 1.0), &node));
        assert!(!exp.reported(
            &metric("centrum_ok", MetricKind::Gauge, &[("bad-label", "v")], 1.0),
            &node
        ));
        assert!(!exp.reported(
            &metric("centrum_ok", MetricKind::Gauge, &[("__x", "v")], 1.0),
            &node
        ));
        assert!(!exp.reported(
            &metric("centrum_ok", MetricKind::Gauge, &[("node", "spoof")], 1.0),
            &node
        ));
        assert!(exp.reported(
            &metric("centrum_ok", MetricKind::Gauge, &[("k", "v")], f64::NAN),
            &node
        ));
        assert!(!exp.reported(&metric("centrum_ok", MetricKind::Counter, &[], 1.0), &node));
        assert!(!exp.reported(&metric("centrum_up", MetricKind::Gauge, &[], 0.0), &node));
        assert!(exp.reported(
            &metric("centrum_inf", MetricKind::Gauge, &[], f64::INFINITY),
            &node
        ));
        let text = exp.render();
        assert!(!text.contains("bad") && !text.contains("spoof"), "{text}");
        assert!(text.contains("\ncentrum_up 1\n"), "{text}");
        assert!(
            text.contains("centrum_ok{node=\"n\",k=\"v\"} NaN\n"),
            "{text}"
        );
        assert!(text.contains("centrum_inf{node=\"n\"} +Inf\n"), "{text}");
    }
}
