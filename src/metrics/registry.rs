//! A small recorder behind the `metrics` facade and its Prometheus text exposition.
//!
//! Why not `metrics-exporter-prometheus`: it brings hyper and an HTTP stack of its own, and
//! pgwarden's admin listener needs four GET routes only (src/admin/). This recorder keeps
//! every series in atomics, so an increment is one relaxed `fetch_add`; registering a series
//! (first use of a name + label set) takes a mutex, which is why the hot path holds its
//! handles (see `super::Hot`) instead of looking them up per call.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Upper bounds of every histogram's buckets, in seconds: from 50 µs (one analysis) to five
/// minutes (a lock wait during a deploy).
pub const BUCKETS: [f64; 20] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct AtomicCounter(AtomicU64);

impl AtomicCounter {
    /// Adds `n`; relaxed, as nothing is ordered by a metric.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl metrics::CounterFn for AtomicCounter {
    fn increment(&self, value: u64) {
        self.add(value);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

/// A value that goes up and down, stored as the bits of an f64.
#[derive(Debug, Default)]
pub struct AtomicGauge(AtomicU64);

impl AtomicGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some(f(f64::from_bits(bits)).to_bits())
            });
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

impl metrics::GaugeFn for AtomicGauge {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// Fixed-bucket histogram ([`BUCKETS`]); counts per bucket are kept non-cumulative and summed
/// when rendered.
#[derive(Debug, Default)]
pub struct AtomicHistogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum: AtomicGauge,
}

impl metrics::HistogramFn for AtomicHistogram {
    fn record(&self, value: f64) {
        let value = if value.is_finite() { value } else { 0.0 };
        if let Some(i) = BUCKETS.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.update(|s| s + value);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

#[derive(Debug, Clone)]
enum Series {
    Counter(Arc<AtomicCounter>),
    Gauge(Arc<AtomicGauge>),
    Histogram(Arc<AtomicHistogram>),
}

type Labels = Vec<(String, String)>;

#[derive(Debug)]
struct Family {
    kind: Kind,
    help: String,
    series: BTreeMap<Labels, Series>,
}

/// Every metric pgwarden has, by name.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

impl Registry {
    fn families(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Family>> {
        // Values are atomics and maps of Arcs: a panic elsewhere leaves nothing half-done.
        self.families.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn describe(&self, name: &str, kind: Kind, help: &str) {
        let mut f = self.families();
        let fam = f.entry(name.to_owned()).or_insert_with(|| Family {
            kind,
            help: String::new(),
            series: BTreeMap::new(),
        });
        fam.kind = kind;
        fam.help = help.to_owned();
    }

    fn series(&self, key: &Key, kind: Kind) -> Series {
        let mut labels: Labels = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        // One series per label set whatever order the caller named them in.
        labels.sort();
        let mut f = self.families();
        let fam = f.entry(key.name().to_owned()).or_insert_with(|| Family {
            kind,
            help: String::new(),
            series: BTreeMap::new(),
        });
        if let Some(s) = fam.series.get(&labels) {
            return s.clone();
        }
        let s = match fam.kind {
            Kind::Counter => Series::Counter(Arc::default()),
            Kind::Gauge => Series::Gauge(Arc::default()),
            Kind::Histogram => Series::Histogram(Arc::default()),
        };
        fam.series.insert(labels, s.clone());
        s
    }

    /// The counter's own atomic, for callers that increment it on the hot path.
    pub fn counter_handle(
        &self,
        name: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<AtomicCounter> {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(k, v)| metrics::Label::new(k.to_string(), v.to_string()))
            .collect();
        match self.series(&Key::from_parts(name, labels), Kind::Counter) {
            Series::Counter(c) => c,
            // The name was described as another kind: count into a detached atomic rather
            // than corrupt the exposition.
            _ => Arc::default(),
        }
    }

    /// The whole registry in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let f = self.families();
        let mut out = String::with_capacity(16 * 1024);
        for (name, fam) in f.iter() {
            if fam.series.is_empty() {
                continue;
            }
            if !fam.help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {}", escape_help(&fam.help));
            }
            let _ = writeln!(out, "# TYPE {name} {}", fam.kind.as_str());
            for (labels, s) in &fam.series {
                match s {
                    Series::Counter(c) => {
                        let _ = writeln!(out, "{name}{} {}", label_text(labels, None), c.get());
                    }
                    Series::Gauge(g) => {
                        let _ = writeln!(
                            out,
                            "{name}{} {}",
                            label_text(labels, None),
                            number(g.get())
                        );
                    }
                    Series::Histogram(h) => {
                        let mut cumulative = 0u64;
                        for (i, b) in BUCKETS.iter().enumerate() {
                            cumulative += h.buckets[i].load(Ordering::Relaxed);
                            let le = number(*b);
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {cumulative}",
                                label_text(labels, Some(&le))
                            );
                        }
                        let count = h.count.load(Ordering::Relaxed);
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {count}",
                            label_text(labels, Some("+Inf"))
                        );
                        let _ = writeln!(
                            out,
                            "{name}_sum{} {}",
                            label_text(labels, None),
                            number(h.sum.get())
                        );
                        let _ = writeln!(out, "{name}_count{} {count}", label_text(labels, None));
                    }
                }
            }
        }
        out
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

fn label_text(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut s = String::from("{");
    let mut first = true;
    let extra = le.map(|v| ("le".to_string(), v.to_string()));
    for (k, v) in labels.iter().chain(extra.iter()) {
        if !first {
            s.push(',');
        }
        first = false;
        let _ = write!(s, "{k}=\"{}\"", escape_label(v));
    }
    s.push('}');
    s
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The facade's view of a `&'static Registry`.
pub struct StaticRecorder(pub &'static Registry);

impl Recorder for StaticRecorder {
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.0.describe(key.as_str(), Kind::Counter, &description);
    }
    fn describe_gauge(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.0.describe(key.as_str(), Kind::Gauge, &description);
    }
    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.0.describe(key.as_str(), Kind::Histogram, &description);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match self.0.series(key, Kind::Counter) {
            Series::Counter(c) => Counter::from_arc(c),
            _ => Counter::noop(),
        }
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        match self.0.series(key, Kind::Gauge) {
            Series::Gauge(g) => Gauge::from_arc(g),
            _ => Gauge::noop(),
        }
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.0.series(key, Kind::Histogram) {
            Series::Histogram(h) => Histogram::from_arc(h),
            _ => Histogram::noop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::{CounterFn, HistogramFn};

    #[test]
    fn exposition_of_each_kind() {
        let r: &'static Registry = Box::leak(Box::default());
        let rec = StaticRecorder(r);
        rec.describe_counter("t_total".into(), None, "A \"count\"\nof things".into());
        let c = rec.register_counter(
            &Key::from_parts("t_total", vec![metrics::Label::new("why", "a\"b\\c")]),
            &Metadata::new("t", metrics::Level::INFO, None),
        );
        c.increment(3);
        let h = Arc::new(AtomicHistogram::default());
        h.record(0.0003);
        h.record(7.0);
        let _ = &h;
        rec.describe_histogram("t_seconds".into(), None, "latency".into());
        let hh = rec.register_histogram(
            &Key::from_name("t_seconds"),
            &Metadata::new("t", metrics::Level::INFO, None),
        );
        hh.record(0.0003);
        hh.record(7.0);
        let text = r.render();
        assert!(
            text.contains("# HELP t_total A \"count\"\\nof things\n"),
            "{text}"
        );
        assert!(text.contains("t_total{why=\"a\\\"b\\\\c\"} 3\n"), "{text}");
        assert!(
            text.contains("t_seconds_bucket{le=\"0.0001\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("t_seconds_bucket{le=\"10\"} 2\n"), "{text}");
        assert!(text.contains("t_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("t_seconds_count 2\n"), "{text}");
        let direct = r.counter_handle("t_total", &[("why", "a\"b\\c")]);
        direct.increment(1);
        assert!(r.render().contains("t_total{why=\"a\\\"b\\\\c\"} 4\n"));
    }
}
