//! deploy/ stays in step with the code it deploys:
//!
//! * the Grafana dashboard is valid JSON, every `prism_*` name in it is a metric
//!   prism-metrics declares, every label its queries filter, group or print by
//!   is a label of those metrics, per-stream panels honour the `$stream`
//!   variable, and every query is valid PromQL (`promtool check rules` on the
//!   queries wrapped as recording rules);
//! * the Prometheus alert rules pass `promtool check rules` and their unit
//!   tests (`promtool test rules`), use only real metric names and labels, and
//!   the scrape example passes `promtool check config`;
//! * every YAML file under deploy/ parses (PyYAML), the Kubernetes manifests
//!   agree with each other (ports, probes on /healthz, non-root, read-only
//!   root), and the kustomization lists every manifest;
//! * the container config and the ConfigMap's config pass `prism check`, bind
//!   the admin listener on 0.0.0.0, and are the same settings;
//! * the Dockerfile builds `-p prism --locked` from paths the .dockerignore
//!   keeps, runs as non-root, exposes the configured ports;
//! * the systemd unit carries the required sandboxing keys (and passes
//!   `systemd-analyze verify` where that exists).

mod common;

use common::{prism_bin, run_with_timeout, TempDir};
use prism_metrics::{names, Metrics};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// Labels Prometheus itself attaches to every scraped series.
const TARGET_LABELS: &[&str] = &["instance", "job"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[track_caller]
fn run(cmd: &mut Command) -> Output {
    run_with_timeout(cmd, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
}

#[track_caller]
fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Metric names and labels, from prism-metrics itself
// ---------------------------------------------------------------------------

/// Label names of each metric. A metric missing here (but in `names::ALL`)
/// makes the label checks fail for queries using it: list it in `Metrics::descs`.
fn metric_labels() -> &'static BTreeMap<String, BTreeSet<String>> {
    static LABELS: OnceLock<BTreeMap<String, BTreeSet<String>>> = OnceLock::new();
    LABELS.get_or_init(|| {
        let m = Metrics::new();
        let mut map = BTreeMap::new();
        for d in m.descs() {
            assert!(names::ALL.contains(&d.fq_name.as_str()), "{}", d.fq_name);
            map.insert(
                d.fq_name.clone(),
                d.variable_labels.iter().cloned().collect(),
            );
        }
        map
    })
}

/// Every `prism_*` word in `text` (comments included) is a declared metric.
#[track_caller]
fn assert_metric_names_exist(file: &str, text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("prism_") {
        let preceded_by_word = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let word: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + word.len()..];
        if preceded_by_word {
            continue;
        }
        assert!(
            names::ALL.contains(&word.as_str()),
            "{file} uses `{word}`, which prism-metrics does not declare (names::ALL)"
        );
        found.insert(word);
    }
    found
}

/// What a PromQL expression references: metric selectors with the labels they
/// match on, and the labels of `by (...)` / `without (...)` clauses.
#[derive(Debug, Default)]
struct PromQl {
    /// (metric, labels in its `{...}` matchers)
    selectors: Vec<(String, Vec<String>)>,
    grouping: Vec<String>,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// A small PromQL scanner: enough to find selectors and grouping clauses
/// (string literals are skipped, so label values never look like names).
fn scan_promql(expr: &str) -> PromQl {
    let b = expr.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let skip_string = |mut i: usize| {
        let quote = b[i];
        i += 1;
        while i < b.len() && b[i] != quote {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i + 1
    };
    let ident = |mut i: usize| {
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        (&expr[start..i], i)
    };
    // A `(label, ...)` or `{label op "value", ...}` list starting at `i` (on
    // the opening bracket): the label names and the index after the list.
    let list = |mut i: usize| {
        let close = if b[i] == b'{' { b'}' } else { b')' };
        let mut labels = Vec::new();
        i += 1;
        loop {
            i = skip_ws(i);
            if i >= b.len() || b[i] == close {
                return (labels, i + 1);
            }
            if b[i] == b',' {
                i += 1;
                continue;
            }
            let (label, j) = ident(i);
            assert!(!label.is_empty(), "cannot parse a label list in {expr}");
            labels.push(label.to_owned());
            i = skip_ws(j);
            if close == b'}' {
                while i < b.len() && matches!(b[i], b'=' | b'!' | b'~') {
                    i += 1;
                }
                i = skip_ws(i);
                assert!(
                    i < b.len() && b[i] == b'"',
                    "expected a quoted label value in {expr}"
                );
                i = skip_string(i);
            }
        }
    };
    let mut out = PromQl::default();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = skip_string(i);
        } else if c == b'{' {
            // Matchers without a metric name before them: not ours.
            i = list(i).1;
        } else if is_ident_start(c) && (i == 0 || !is_ident(b[i - 1]) && b[i - 1] != b'$') {
            let (word, j) = ident(i);
            let k = skip_ws(j);
            let next = b.get(k).copied();
            i = j;
            if word.starts_with("prism_") {
                let mut labels = Vec::new();
                if next == Some(b'{') {
                    (labels, i) = list(k);
                }
                out.selectors.push((word.to_owned(), labels));
            } else if (word == "by" || word == "without") && next == Some(b'(') {
                let (labels, j) = list(k);
                out.grouping.extend(labels);
                i = j;
            } else if next == Some(b'{') {
                // Another metric's selector (`up{...}`).
                i = list(k).1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Checks the labels an expression uses against the metrics it reads; returns
/// the labels its results can carry (for legends and alert annotations).
#[track_caller]
fn check_labels(file: &str, expr: &str) -> BTreeSet<String> {
    let q = scan_promql(expr);
    let labels = metric_labels();
    let mut available: BTreeSet<String> = TARGET_LABELS.iter().map(|s| s.to_string()).collect();
    for (metric, matched) in &q.selectors {
        let own = labels.get(metric).unwrap_or_else(|| {
            panic!("{file}: no label list for {metric}: add it to metric_labels()")
        });
        for l in matched {
            assert!(
                own.contains(l) || TARGET_LABELS.contains(&l.as_str()),
                "{file}: `{expr}` matches label `{l}`, which {metric} does not have ({own:?})"
            );
        }
        available.extend(own.iter().cloned());
    }
    for l in &q.grouping {
        assert!(
            available.contains(l),
            "{file}: `{expr}` groups by `{l}`, which none of its metrics has"
        );
    }
    if q.grouping.is_empty() {
        available
    } else {
        q.grouping.iter().cloned().collect()
    }
}

/// `{{label}}` placeholders in a Grafana legend or `$labels.x` in an annotation.
fn placeholders(text: &str, open: &str, close: &[char]) -> Vec<String> {
    text.split(open)
        .skip(1)
        .map(|s| {
            s.trim_start()
                .split(|c: char| close.contains(&c) || c.is_whitespace())
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[test]
fn scanner_understands_selectors_and_grouping() {
    let q = scan_promql(
        r#"sum by (stream, target) (rate(prism_target_bytes_sent_total{instance=~"$instance",stream=~"a,b{c}"}[$__rate_interval])) * 8 or up{job="x"}"#,
    );
    assert_eq!(
        q.selectors,
        vec![(
            "prism_target_bytes_sent_total".to_owned(),
            vec!["instance".to_owned(), "stream".to_owned()]
        )]
    );
    assert_eq!(q.grouping, vec!["stream", "target"]);
    let q = scan_promql("max without(version) (prism_build_info)");
    assert_eq!(q.selectors, vec![("prism_build_info".to_owned(), vec![])]);
    assert_eq!(q.grouping, vec!["version"]);
}

// ---------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------

/// A python3 that has PyYAML (Debian: python3-yaml, which ./scripts/test.sh
/// installs when missing).
fn python() -> &'static str {
    static PY: OnceLock<&'static str> = OnceLock::new();
    PY.get_or_init(|| {
        for candidate in ["python3", "/usr/bin/python3"] {
            let ok = Command::new(candidate)
                .args(["-c", "import yaml"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return candidate;
            }
        }
        panic!("no python3 with PyYAML found: install python3-yaml (./scripts/test.sh does)")
    })
}

/// Every document of a YAML file, as JSON (parsed by PyYAML's safe loader).
#[track_caller]
fn load_yaml(rel: &str) -> Vec<Value> {
    let out = run(Command::new(python())
        .args([
            "-c",
            "import json, sys, yaml\n\
             docs = list(yaml.safe_load_all(open(sys.argv[1])))\n\
             json.dump(docs, sys.stdout, default=str)",
        ])
        .arg(root().join(rel)));
    assert_success(&out, &format!("parsing {rel} as YAML"));
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

fn promtool(args: &[&str]) -> Output {
    let found = Command::new("promtool").arg("--version").output();
    assert!(
        found.is_ok(),
        "promtool not found: install it with ./scripts/test.sh (Debian package `prometheus`)"
    );
    run(Command::new("promtool").args(args).current_dir(root()))
}

// ---------------------------------------------------------------------------
// Grafana
// ---------------------------------------------------------------------------

const DASHBOARD: &str = "deploy/grafana/prism-dashboard.json";

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// (panel title, expr, legend) of every query, rows' nested panels included.
fn dashboard_queries(d: &Value) -> Vec<(String, String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String, String)>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("").to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    let legend = t["legendFormat"].as_str().unwrap_or("").to_owned();
                    out.push((title.clone(), expr.to_owned(), legend));
                }
            }
            if let Some(inner) = p["panels"].as_array() {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(d["panels"].as_array().expect("panels"), &mut out);
    out
}

#[test]
fn dashboard_uses_real_metrics_and_labels() {
    let text = read(DASHBOARD);
    let d = dashboard();
    let used = assert_metric_names_exist(DASHBOARD, &text);
    // What the dashboard is for (issue 7).
    for must in [
        names::INGEST_BYTES_TOTAL,
        names::TARGET_UP,
        names::TARGET_BYTES_SENT_TOTAL,
        names::TARGET_QUEUE_BYTES,
        names::TARGET_DROPPED_FRAMES_TOTAL,
        names::TARGET_RECONNECTS_TOTAL,
        names::CONNECTIONS_ACTIVE,
        names::CONNECTION_ERRORS_TOTAL,
        names::PLAYERS_ACTIVE,
    ] {
        assert!(used.contains(must), "the dashboard does not show {must}");
    }

    let queries = dashboard_queries(&d);
    assert!(queries.len() >= 15, "only {} queries", queries.len());
    let labels = metric_labels();
    for (title, expr, legend) in &queries {
        let file = format!("{DASHBOARD} panel {title:?}");
        let available = check_labels(&file, expr);
        for l in placeholders(legend, "{{", &['}']) {
            assert!(
                available.contains(&l),
                "{file}: legend {legend:?} prints `{l}`, which `{expr}` does not carry"
            );
        }
        // The $stream variable narrows every per-stream panel.
        let q = scan_promql(expr);
        for (metric, matched) in &q.selectors {
            if labels[metric].contains("stream") {
                assert!(
                    matched.iter().any(|l| l == "stream") && expr.contains("\"$stream\""),
                    "{file}: `{expr}` reads {metric} without stream=~\"$stream\""
                );
            }
        }
    }

    // Template variables: a Prometheus data source and a `stream` variable fed
    // by a real metric's stream label.
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(var("datasource")["query"], "prometheus");
    let stream = var("stream");
    let def = stream["definition"].as_str().expect("stream.definition");
    let inner = def
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(", stream)"))
        .unwrap_or_else(|| panic!("$stream should be label_values(METRIC, stream): {def}"));
    check_labels("$stream", inner);
    assert!(labels[&scan_promql(inner).selectors[0].0].contains("stream"));
    assert_eq!(stream["query"]["query"], def);

    // Every panel queries through the $datasource variable; ids are unique.
    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()));
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // Grafana variables replaced by what they expand to, then every query
    // wrapped as a recording rule, which promtool parses.
    let d = dashboard();
    let mut rules = Vec::new();
    for (i, (_, expr, _)) in dashboard_queries(&d).iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("$instance", ".*")
            .replace("$stream", ".*");
        assert!(!expr.contains('$'), "unexpanded variable in {expr}");
        rules.push(serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": expr }));
    }
    let file = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    let dir = TempDir::new("deploy-dashboard");
    let path = dir.join("dashboard-queries.yml"); // JSON is YAML
    fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    let out = promtool(&["check", "rules", path.to_str().unwrap()]);
    assert_success(&out, "promtool check rules on the dashboard queries");
}

// ---------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------

#[test]
fn alert_rules_and_scrape_config_pass_promtool() {
    let rules = "deploy/prometheus/prism-rules.yml";
    assert_success(
        &promtool(&["check", "rules", rules]),
        "promtool check rules",
    );
    assert_success(
        &promtool(&["test", "rules", "deploy/prometheus/prism-rules.test.yml"]),
        "promtool test rules",
    );
    assert_success(
        &promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]),
        "promtool check config",
    );

    assert_metric_names_exist(rules, &read(rules));
    assert_metric_names_exist(
        "prism-rules.test.yml",
        &read("deploy/prometheus/prism-rules.test.yml"),
    );
    let doc = &load_yaml(rules)[0];
    let mut alerts = 0;
    for group in doc["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr");
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
            let file = format!("{rules} {name}");
            let available = check_labels(&file, expr);
            for text in rule["annotations"].as_object().into_iter().flatten() {
                for l in placeholders(text.1.as_str().unwrap(), "$labels.", &['}', '.']) {
                    assert!(
                        available.contains(&l),
                        "{file}: annotation uses $labels.{l}, which `{expr}` does not carry"
                    );
                }
            }
            alerts += rule["alert"].is_string() as usize;
        }
    }
    assert!(alerts >= 2, "{alerts} alerts");
}

// ---------------------------------------------------------------------------
// YAML and Kubernetes
// ---------------------------------------------------------------------------

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn every_yaml_file_parses() {
    let mut files = Vec::new();
    files_under(&root().join("deploy"), &mut files);
    let yaml: Vec<_> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    assert!(yaml.len() >= 8, "{yaml:?}");
    for p in yaml {
        let rel = p.strip_prefix(root()).unwrap().to_str().unwrap();
        let docs = load_yaml(rel);
        assert!(docs.iter().all(|d| !d.is_null()), "{rel}: empty document");
    }
}

const K8S: &str = "deploy/kubernetes";

/// Every object of the Kubernetes manifests, by (kind, name).
fn k8s_objects() -> BTreeMap<(String, String), Value> {
    let kustomization = &load_yaml(&format!("{K8S}/kustomization.yaml"))[0];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let present: BTreeSet<String> = fs::read_dir(root().join(K8S))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml resources vs. files");
    let mut objects = BTreeMap::new();
    for file in &listed {
        for doc in load_yaml(&format!("{K8S}/{file}")) {
            let kind = doc["kind"].as_str().expect("kind").to_owned();
            let name = doc["metadata"]["name"].as_str().expect("name").to_owned();
            assert!(doc["apiVersion"].is_string(), "{file}: {kind} apiVersion");
            objects.insert((kind, name), doc);
        }
    }
    objects
}

fn get<'a>(objects: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    objects
        .get(&(kind.to_owned(), name.to_owned()))
        .unwrap_or_else(|| panic!("no {kind} {name} in {K8S}"))
}

/// (port, protocol) pairs.
fn ports(list: &Value, key: &str) -> BTreeSet<(u64, String)> {
    list.as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP").to_owned();
            (p[key].as_u64().expect("port number"), proto)
        })
        .collect()
}

fn tcp_udp(pairs: &[(u64, &str)]) -> BTreeSet<(u64, String)> {
    pairs.iter().map(|(p, t)| (*p, t.to_string())).collect()
}

#[test]
fn kubernetes_manifests_agree() {
    let objects = k8s_objects();
    let deployment = get(&objects, "Deployment", "prism");
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"], deployment["spec"]["selector"]["matchLabels"],
        "pod labels vs. selector"
    );
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        c["args"],
        serde_json::json!(["--config", "/etc/prism/prism.toml"])
    );
    assert_eq!(
        ports(&c["ports"], "containerPort"),
        tcp_udp(&[
            (1935, "TCP"),
            (443, "TCP"),
            (80, "TCP"),
            (9000, "UDP"),
            (9935, "TCP")
        ])
    );
    let named_port = |name: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port named {name}"))
            .clone()
    };
    assert_eq!(named_port("admin")["containerPort"], 9935);
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    assert!(c["resources"]["requests"].is_object(), "resources.requests");
    assert!(
        c["resources"]["limits"]["memory"].is_string(),
        "memory limit"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_ne!(spec["securityContext"]["runAsUser"], 0);
    // Ports 80/443 as non-root without capabilities.
    assert!(spec["securityContext"]["sysctls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "net.ipv4.ip_unprivileged_port_start" && s["value"] == "0"));
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/prism");
    let volume = &spec["volumes"][0];
    assert_eq!(volume["name"], c["volumeMounts"][0]["name"]);
    assert_eq!(
        volume["projected"]["sources"][0]["configMap"]["name"],
        "prism-config"
    );

    // Public Service: the media ports, TCP and UDP; targetPorts name real ports.
    let svc = get(&objects, "Service", "prism");
    assert_eq!(
        ports(&svc["spec"]["ports"], "port"),
        tcp_udp(&[(1935, "TCP"), (443, "TCP"), (80, "TCP"), (9000, "UDP")])
    );
    for p in svc["spec"]["ports"].as_array().unwrap() {
        let target = named_port(p["targetPort"].as_str().expect("named targetPort"));
        assert_eq!(target["protocol"], p["protocol"], "{p}");
    }
    // Admin Service (ClusterIP only) and the ServiceMonitor scraping it.
    let admin = get(&objects, "Service", "prism-admin");
    assert_eq!(admin["spec"]["type"], "ClusterIP");
    assert_eq!(admin["spec"]["ports"][0]["targetPort"], "admin");
    for s in [svc, admin] {
        for (k, v) in s["spec"]["selector"].as_object().unwrap() {
            assert_eq!(&pod["metadata"]["labels"][k], v, "Service selector {k}");
        }
    }
    let sm = get(&objects, "ServiceMonitor", "prism");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            &admin["metadata"]["labels"][k], v,
            "ServiceMonitor selector {k}"
        );
    }
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        admin["spec"]["ports"][0]["name"]
    );
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
}

// ---------------------------------------------------------------------------
// Prism configs
// ---------------------------------------------------------------------------

const CONTAINER_TOML: &str = "deploy/prism.container.toml";

#[track_caller]
fn prism_check(path: &Path) {
    let out = run(Command::new(prism_bin())
        .args(["check", "--config"])
        .arg(path));
    assert_success(&out, &format!("prism check --config {}", path.display()));
}

/// The settings of a TOML file: lines without comments and blank lines.
fn settings(toml: &str) -> Vec<String> {
    toml.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Ports of every `listen = "...:PORT"` line.
fn listen_ports(toml: &str) -> BTreeSet<u64> {
    settings(toml)
        .iter()
        .filter_map(|l| l.strip_prefix("listen"))
        .map(|l| {
            let v = l.trim_start_matches([' ', '=']).trim_matches('"');
            v.rsplit(':').next().unwrap().parse().expect("listen port")
        })
        .collect()
}

fn admin_listen(toml: &str) -> String {
    let s = settings(toml);
    let http = s.iter().position(|l| l == "[http]").expect("[http] table");
    s[http + 1..]
        .iter()
        .take_while(|l| !l.starts_with('['))
        .find_map(|l| l.strip_prefix("listen = "))
        .expect("[http] listen")
        .trim_matches('"')
        .to_owned()
}

#[test]
fn container_configs_pass_prism_check() {
    let container = read(CONTAINER_TOML);
    prism_check(&root().join(CONTAINER_TOML));
    // Probes, HEALTHCHECK and Prometheus come from outside the container.
    assert_eq!(admin_listen(&container), "0.0.0.0:9935");

    let objects = k8s_objects();
    let cm = get(&objects, "ConfigMap", "prism-config");
    let toml = cm["data"]["prism.toml"].as_str().expect("data.prism.toml");
    let dir = TempDir::new("deploy-configmap");
    let path = dir.join("prism.toml");
    fs::write(&path, toml).unwrap();
    prism_check(&path);
    assert_eq!(
        settings(toml),
        settings(&container),
        "the ConfigMap's prism.toml and {CONTAINER_TOML} should hold the same settings"
    );
    // Every listener is a port the Dockerfile exposes.
    let exposed = dockerfile_exposed();
    for port in listen_ports(&container) {
        assert!(
            exposed.iter().any(|(p, _)| *p == port),
            "{port} not exposed"
        );
    }
}

// ---------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------

const DOCKERFILE: &str = "deploy/Dockerfile";

fn dockerfile_exposed() -> BTreeSet<(u64, String)> {
    let text = read(DOCKERFILE);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .expect("EXPOSE");
    line.split_whitespace()
        .map(|p| match p.split_once('/') {
            Some((n, proto)) => (n.parse().unwrap(), proto.to_uppercase()),
            None => (p.parse().unwrap(), "TCP".to_owned()),
        })
        .collect()
}

/// Whether `.dockerignore` leaves `path` in the build context (the subset of
/// its syntax used there: `/dir`, `/dir/*`, `**/*.ext` and `!` exceptions).
fn docker_context_keeps(ignore: &str, path: &str) -> bool {
    let mut kept = true;
    for raw in ignore.lines().map(str::trim) {
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let (negate, pattern) = match raw.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, raw),
        };
        let pattern = pattern.trim_start_matches('/');
        let matches = if let Some(ext) = pattern.strip_prefix("**/*") {
            path.ends_with(ext)
        } else if let Some(dir) = pattern.strip_suffix("/*") {
            path.starts_with(&format!("{dir}/"))
        } else {
            path == pattern || path.starts_with(&format!("{pattern}/"))
        };
        if matches {
            kept = negate;
        }
    }
    kept
}

#[test]
fn dockerfile_builds_from_the_workspace() {
    let text = read(DOCKERFILE);
    let ignore = read(".dockerignore");
    assert!(text.contains("cargo build --release -p prism --locked"));
    assert!(text.contains("COPY deploy/prism.container.toml /etc/prism/prism.toml"));
    assert!(text.contains(r#"ENTRYPOINT ["prism"]"#));
    assert!(text.contains(r#"CMD ["--config", "/etc/prism/prism.toml"]"#));
    assert!(text.contains("HEALTHCHECK") && text.contains("/healthz"));
    assert_eq!(
        text.matches("\nFROM ").count(),
        2,
        "multi-stage: build + runtime"
    );
    // Non-root: the last USER is a non-zero numeric uid (verifiable by
    // Kubernetes' runAsNonRoot) and matches the Deployment's.
    let user = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    let uid: u64 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric uid");
    assert_ne!(uid, 0);
    let objects = k8s_objects();
    let pod_sc =
        &get(&objects, "Deployment", "prism")["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(pod_sc["runAsUser"], uid);
    assert_eq!(
        dockerfile_exposed(),
        tcp_udp(&[
            (1935, "TCP"),
            (443, "TCP"),
            (80, "TCP"),
            (9000, "UDP"),
            (9935, "TCP")
        ])
    );

    // What `cargo build -p prism --locked` needs is in the context.
    let manifest = read("Cargo.toml");
    let mut needed = vec![
        "Cargo.toml".to_owned(),
        "Cargo.lock".to_owned(),
        "src/lib.rs".to_owned(),
        "deploy/prism.container.toml".to_owned(),
    ];
    for e in fs::read_dir(root().join("crates")).unwrap().flatten() {
        needed.push(format!(
            "crates/{}/Cargo.toml",
            e.file_name().to_string_lossy()
        ));
    }
    assert!(manifest.contains(r#""benches/prism-load""#));
    needed.push("benches/prism-load/Cargo.toml".to_owned());
    needed.push("crates/prism-rtmp/tests/fixtures/chunk_size_zero.bin".to_owned());
    for path in &needed {
        assert!(root().join(path).exists(), "{path} does not exist");
        assert!(
            docker_context_keeps(&ignore, path),
            ".dockerignore leaves {path} out of the build context"
        );
    }
    for path in ["target/debug/prism", ".git/HEAD", "deploy/Dockerfile"] {
        assert!(
            !docker_context_keeps(&ignore, path),
            "{path} in the context"
        );
    }
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

const UNIT: &str = "deploy/systemd/prism.service";

#[test]
fn systemd_unit_is_sandboxed() {
    let text = read(UNIT);
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with(['#', ';', '[']) || line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{UNIT}: {line}"));
        keys.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    let one = |k: &str| -> &str {
        match keys.get(k).map(Vec::as_slice) {
            Some([v]) => v,
            other => panic!("{UNIT}: expected one {k}=, got {other:?}"),
        }
    };
    for (k, v) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("ConfigurationDirectory", "prism"),
    ] {
        assert_eq!(one(k), v, "{UNIT}: {k}");
    }
    assert!(one("ExecStart").ends_with("prism --config /etc/prism/prism.toml"));
    let families: BTreeSet<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert!(families.contains("AF_INET") && families.contains("AF_INET6"));
    assert!(
        families
            .iter()
            .all(|f| ["AF_INET", "AF_INET6", "AF_UNIX"].contains(f)),
        "{families:?}"
    );
    assert!(keys["SystemCallFilter"]
        .iter()
        .any(|v| v == "@system-service"));
    let nofile: u64 = one("LimitNOFILE").parse().expect("LimitNOFILE number");
    assert!(nofile >= 65536, "LimitNOFILE={nofile}");

    // systemd's own checker, with ExecStart pointing at the binary just built.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("note: systemd-analyze not installed; skipping `systemd-analyze verify`");
        return;
    }
    let dir = TempDir::new("deploy-systemd");
    let unit = dir.join("prism.service");
    let bin = prism_bin();
    fs::write(
        &unit,
        text.replace("/usr/local/bin/prism", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    assert_success(&out, "systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("prism.service"),
        "systemd-analyze verify complains about the unit:\n{stderr}"
    );
}

// Origin -> edge pulling (deploy/kubernetes/edge.yaml).
#[test]
fn kubernetes_edge_manifests_agree() {
    let objects = k8s_objects();
    let origin_pod = &get(&objects, "Deployment", "prism")["spec"]["template"];
    let edge = get(&objects, "Deployment", "prism-edge");
    let pod = &edge["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"], edge["spec"]["selector"]["matchLabels"],
        "edge pod labels vs. selector"
    );
    assert_ne!(
        pod["metadata"]["labels"], origin_pod["metadata"]["labels"],
        "edge and origin pods must not match each other's selectors"
    );
    let c = &pod["spec"]["containers"][0];
    let named_port = |name: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no edge container port named {name}"))
            .clone()
    };
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }
    // Services select what they should and name real ports.
    let selects = |svc: &Value, labels: &Value| {
        svc["spec"]["selector"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| &labels[k] == v)
    };
    for name in ["prism-edge", "prism-edge-admin"] {
        let svc = get(&objects, "Service", name);
        assert!(selects(svc, &pod["metadata"]["labels"]), "{name} selector");
        for p in svc["spec"]["ports"].as_array().unwrap() {
            let target = named_port(p["targetPort"].as_str().expect("named targetPort"));
            assert_eq!(target["protocol"], p["protocol"], "{name}: {p}");
        }
    }
    let origin_svc = get(&objects, "Service", "prism-origin");
    assert!(
        selects(origin_svc, &origin_pod["metadata"]["labels"]),
        "prism-origin must select the origin pods"
    );
    assert!(!selects(origin_svc, &pod["metadata"]["labels"]));
    let origin_port = origin_svc["spec"]["ports"][0]["port"].as_u64().unwrap();
    // The edge config passes `prism check` and pulls from that Service.
    let cm_name = pod["spec"]["volumes"][0]["configMap"]["name"]
        .as_str()
        .unwrap();
    let cm = get(&objects, "ConfigMap", cm_name);
    let toml = cm["data"]["prism.toml"].as_str().expect("data.prism.toml");
    let dir = TempDir::new("deploy-edge");
    let path = dir.join("prism.toml");
    fs::write(&path, toml).unwrap();
    prism_check(&path);
    assert!(
        toml.contains(&format!(
            "origin = \"rtmp://prism-origin:{origin_port}/{{app}}/{{stream}}\""
        )),
        "{toml}"
    );
    assert_eq!(admin_listen(toml), "0.0.0.0:9935");
    // HLS viewers and RTSP players pull too: the edge serves both, and its Service keeps
    // a viewer on one pod (each pod numbers its HLS segments on its own).
    assert!(toml.contains("[hls]") && toml.contains("[rtsp]"), "{toml}");
    let svc = get(&objects, "Service", "prism-edge");
    assert_eq!(svc["spec"]["sessionAffinity"], "ClientIP", "{svc}");
    for port in ["hls", "rtsp"] {
        assert!(
            svc["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["targetPort"] == port),
            "prism-edge has no {port} port: {svc}"
        );
    }
}
