//! `prism check --config FILE` accepts the shipped configs and refuses bad
//! ones with `file:line:col` and the offending key; `prism --config BAD`
//! refuses to serve (and never leaves half a server running); `--help` and
//! `version` work.

mod common;

use common::*;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn run_prism(args: &[&str], config: Option<&Path>) -> Output {
    let mut cmd = Command::new(prism_bin());
    cmd.args(args);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    run_with_timeout(&mut cmd, Duration::from_secs(20)).unwrap_or_else(|e| panic!("prism: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Writes `toml` to `dir/name`, runs `prism check` on it, asserts it fails and
/// that stderr is `<path>:<line>:...` and mentions every `needles`.
#[track_caller]
fn assert_check_refuses(dir: &TempDir, name: &str, toml: &str, line: usize, needles: &[&str]) {
    let path = dir.join(name);
    fs::write(&path, toml).expect("write config");
    let out = run_prism(&["check"], Some(&path));
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "prism check accepted {name} ({}):\n{toml}\nstdout: {}",
        out.status,
        text(&out.stdout)
    );
    let place = format!("{}:{line}:", path.display());
    assert!(
        stderr.contains(&place),
        "{name}: stderr does not name {place:?}:\n{stderr}"
    );
    for n in needles {
        assert!(
            stderr.contains(n),
            "{name}: stderr does not mention {n:?}:\n{stderr}"
        );
    }
}

#[test]
fn shipped_configs_pass_check() {
    let dir = workspace_dir().join("config");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("read config/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no config/*.toml found");
    for f in &files {
        let out = run_prism(&["check"], Some(f));
        assert!(
            out.status.success(),
            "prism check {} failed ({}):\n{}",
            f.display(),
            out.status,
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("ok"),
            "{}: {}",
            f.display(),
            text(&out.stdout)
        );
    }
}

#[test]
fn unknown_keys_are_refused_with_file_line_and_key() {
    let dir = TempDir::new("config-check");
    assert_check_refuses(
        &dir,
        "typo-rtmp.toml",
        "[rtmp]\nlistn = \"0.0.0.0:1935\"\n",
        2,
        &["listn"],
    );
    assert_check_refuses(
        &dir,
        "typo-target.toml",
        "[rtmp]\nlisten = \"127.0.0.1:1935\"\n\n[[route]]\nstream = \"live/*\"\n\n  \
         [[route.target]]\n  name = \"a\"\n  url = \"rtmp://127.0.0.1/app/{stream}\"\n  \
         max_queue_msec = 100\n",
        10,
        &["max_queue_msec"],
    );
    assert_check_refuses(
        &dir,
        "typo-section.toml",
        "[rtmp]\nlisten = \"0.0.0.0:1935\"\n\n[strem]\nreconnect_grace_ms = 1\n",
        4,
        &["strem"],
    );
}

#[test]
fn bad_values_are_refused() {
    let dir = TempDir::new("config-check");
    assert_check_refuses(
        &dir,
        "bad-rtmp-listen.toml",
        "[rtmp]\nlisten = \"localhost:1935\"\n",
        2,
        &["rtmp.listen", "localhost:1935"],
    );
    assert_check_refuses(
        &dir,
        "bad-http-listen.toml",
        "[rtmp]\nlisten = \"127.0.0.1:1935\"\n[http]\nlisten = \"127.0.0.1\"\n",
        4,
        &["http.listen"],
    );
    let route = |url: &str| {
        format!(
            "[[route]]\nstream = \"live/*\"\n  [[route.target]]\n  name = \"t\"\n  url = \"{url}\"\n"
        )
    };
    assert_check_refuses(
        &dir,
        "bad-scheme.toml",
        &route("http://127.0.0.1/app/{stream}"),
        5,
        &["route[0].target[0].url", "http"],
    );
    assert_check_refuses(
        &dir,
        "not-a-url.toml",
        &route("127.0.0.1:1935/app/{stream}"),
        5,
        &["route[0].target[0].url"],
    );
    assert_check_refuses(
        &dir,
        "no-app.toml",
        &route("rtmp://127.0.0.1:1935/{stream}"),
        5,
        &["route[0].target[0].url"],
    );
    assert_check_refuses(
        &dir,
        "bad-port.toml",
        &route("rtmp://127.0.0.1:99999/app/{stream}"),
        5,
        &["route[0].target[0].url", "99999"],
    );
    assert_check_refuses(
        &dir,
        "bad-placeholder.toml",
        &route("rtmp://127.0.0.1/app/{key}"),
        5,
        &["route[0].target[0].url", "{key}"],
    );

    // A missing file is an error too, naming the file.
    let missing = dir.join("does-not-exist.toml");
    let out = run_prism(&["check"], Some(&missing));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&missing.display().to_string()),
        "{}",
        text(&out.stderr)
    );
    // And `check` without a config is a usage error.
    let out = run_prism(&["check"], None);
    assert!(!out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn serve_refuses_a_bad_config() {
    let rtmp_port = free_port();
    let http_port = free_port();
    let rtmp_addr = SocketAddr::from(([127, 0, 0, 1], rtmp_port));
    // Valid listeners, one bad target URL (no app) on line 10.
    let cfg = format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
         [[route]]\nstream = \"live/*\"\n  [[route.target]]\n  name = \"t\"\n  \
         url = \"rtmp://127.0.0.1/{{stream}}\"\n"
    );
    let mut prism = Prism::spawn(&cfg);
    let status = prism
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("prism kept running on a bad config:\n{}", prism.stderr()));
    assert!(!status.success(), "exit {status}");
    let err = prism.stderr();
    let place = format!("{}:10:", prism.config_path.display());
    assert!(err.contains(&place), "stderr does not name {place}:\n{err}");
    assert!(err.contains("route[0].target[0].url"), "{err}");
    assert!(!port_open(rtmp_addr), "something listens on {rtmp_addr}");

    // Same for an unknown key.
    let mut prism = Prism::spawn(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\nlistn = \"x\"\n"
    ));
    let status = prism
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("prism kept running on a bad config:\n{}", prism.stderr()));
    assert!(!status.success(), "exit {status}");
    assert!(prism.stderr().contains("listn"), "{}", prism.stderr());
    assert!(!port_open(rtmp_addr), "something listens on {rtmp_addr}");
}

/// The config is valid but the admin port is taken: prism must exit (not keep
/// serving RTMP without its admin endpoint).
#[test]
fn serve_exits_when_a_listener_cannot_bind() {
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let http_port = busy.local_addr().expect("addr").port();
    let rtmp_port = free_port();
    let mut prism = Prism::spawn(&format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp_port}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n"
    ));
    let status = prism.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "prism kept running without its admin listener:\n{}",
            prism.stderr()
        )
    });
    assert!(!status.success(), "exit {status}");
    let err = prism.stderr();
    assert!(err.contains(&format!("127.0.0.1:{http_port}")), "{err}");
    // Which listener, why, and what to change.
    assert!(err.contains("cannot listen for admin HTTP"), "{err}");
    assert!(err.contains("`[http] listen`"), "{err}");
    assert!(err.contains("already listens on port"), "{err}");
    assert!(!port_open(SocketAddr::from(([127, 0, 0, 1], rtmp_port))));
    drop(busy);
}

#[test]
fn help_and_version() {
    let out = run_prism(&["--help"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    for needle in ["Usage", "--config", "check", "version"] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }

    let want = format!("prism {}", env!("CARGO_PKG_VERSION"));
    let out = run_prism(&["version"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), want);
    let out = run_prism(&["--version"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), want);

    let out = run_prism(&["no-such-command"], None);
    assert!(!out.status.success());

    // Each command explains itself; `check` without a file says what to add.
    for needle in [
        "runs the relay",
        "admin API",
        "Validate a configuration file",
        "Examples:",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    let out = run_prism(&["check", "--help"], None);
    assert!(
        text(&out.stdout).contains("FILE:LINE:COL"),
        "{}",
        text(&out.stdout)
    );
    let out = run_prism(&["check"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("prism check --config FILE"),
        "{}",
        text(&out.stderr)
    );
}
