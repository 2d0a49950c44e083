use super::*;
use std::time::Duration;

const CONTRACT: &str = r#"
[rtmp]
listen = "0.0.0.0:1935"

[http]
listen = "127.0.0.1:9935"

[[route]]
stream = "live/*"
  [[route.target]]
  name = "youtube"
  url = "rtmp://a.rtmp.youtube.com/live2/{stream}"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "config.toml")
}

fn err(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

#[test]
fn contract_example_parses() {
    let c = parse(CONTRACT).unwrap();
    assert_eq!(c.rtmp.listen, "0.0.0.0:1935".parse().unwrap());
    assert_eq!(c.http.listen, "127.0.0.1:9935".parse().unwrap());
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.routes[0].stream.as_str(), "live/*");
    let t = &c.routes[0].targets[0];
    assert_eq!(t.name, "youtube");
    assert_eq!(t.url, "rtmp://a.rtmp.youtube.com/live2/{stream}");
    assert_eq!(t.queue, QueueConfig::default());
}

#[test]
fn every_key_parses() {
    let c = parse(
        r#"
[rtmp]
listen = "[::]:1936"
chunk_size = 128
handshake_timeout_ms = 500
max_message_bytes = 1000
[http]
listen = "0.0.0.0:80"
[stream]
reconnect_grace_ms = 0
gop_cache = false
gop_cache_max_bytes = 1048576
[player]
max_queue_ms = 1
max_queue_bytes = 2
overflow_disconnect_ms = 3
write_merge_ms = 7
[[route]]
stream = "*"
  [[route.target]]
  name = "a"
  url = "srt://h:9000?streamid={app}/{stream}"
  max_queue_ms = 4
  max_queue_bytes = 5
  overflow_disconnect_ms = 0
"#,
    )
    .unwrap();
    assert_eq!(c.rtmp.listen, "[::]:1936".parse().unwrap());
    assert_eq!(c.rtmp.chunk_size, 128);
    assert_eq!(c.rtmp.handshake_timeout, Duration::from_millis(500));
    assert_eq!(c.rtmp.max_message_bytes, 1000);
    assert_eq!(c.hub.reconnect_grace, Duration::ZERO);
    assert!(!c.hub.gop_cache);
    assert_eq!(c.hub.gop_cache_max_bytes, 1048576);
    assert_eq!(
        c.player,
        QueueConfig {
            max_queue_ms: 1,
            max_queue_bytes: 2,
            overflow_disconnect: Duration::from_millis(3),
            write_merge: Some(Duration::from_millis(7)),
        }
    );
    assert_eq!(
        c.routes[0].targets[0].queue,
        QueueConfig {
            max_queue_ms: 4,
            max_queue_bytes: 5,
            overflow_disconnect: Duration::ZERO,
            write_merge: None,
        }
    );
}

#[test]
fn embedded_default() {
    let d = Config::default();
    assert_eq!(d.rtmp.listen, "0.0.0.0:1935".parse().unwrap());
    assert_eq!(d.http.listen, "127.0.0.1:9935".parse().unwrap());
    assert!(d.routes.is_empty());
    assert_eq!(d.rtmp.chunk_size, 4096);
    assert_eq!(d.rtmp.max_message_bytes, 8_388_608);
    assert_eq!(d.hub.reconnect_grace, Duration::from_secs(5));
    assert!(d.hub.gop_cache);
    assert_eq!(d.player.max_queue_ms, 3000);
    assert_eq!(d.player.max_queue_bytes, 8_388_608);
    assert_eq!(d.player.overflow_disconnect, Duration::from_secs(10));
    // An empty file is the default too.
    assert_eq!(parse("").unwrap(), d);
}

// The shipped example configs must stay loadable, and default.toml must say
// exactly what the code does without a file.
#[test]
fn example_configs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    assert_eq!(
        Config::load(&dir.join("default.toml")).unwrap(),
        Config::default()
    );
    let s = Config::load(&dir.join("simulcast.toml")).unwrap();
    let names: Vec<_> = s
        .targets_for("live", "k")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["youtube", "twitch", "facebook"]);
    let l = Config::load(&dir.join("local-relay.toml")).unwrap();
    assert!(!l.routes.is_empty());
    let h = Config::load(&dir.join("hls.toml")).unwrap();
    assert!(h.hls_for("live", "k") && !h.hls_for("private", "k"));
    assert_eq!(h.hls_container_for("live", "k"), HlsContainer::Fmp4);
    assert_eq!(h.hls_container_for("stb", "k"), HlsContainer::Both);
}

#[test]
fn load_missing_file_names_it() {
    let e = Config::load(Path::new("/nonexistent/prism.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string().starts_with("/nonexistent/prism.toml: "),
        "{e}"
    );
}

#[test]
fn unknown_top_level_key() {
    let e = err("\n\n[rtmp]\nlistn = \"0.0.0.0:1935\"\n");
    assert!(
        e.starts_with("config.toml:4:1: unknown field `listn`"),
        "{e}"
    );
    assert!(e.contains("`listen`"), "{e}");
    let e = err("[rtmp]\n[strem]\n");
    assert!(e.starts_with("config.toml:2:"), "{e}");
    assert!(e.contains("`strem`"), "{e}");
}

#[test]
fn unknown_key_in_target() {
    let text = format!("{CONTRACT}  max_queue_msec = 10\n");
    let line = text.lines().count();
    let e = err(&text);
    assert!(
        e.starts_with(&format!(
            "config.toml:{line}:3: unknown field `max_queue_msec`"
        )),
        "{e}"
    );
}

#[test]
fn wrong_type_is_placed() {
    let e = err("[rtmp]\nchunk_size = \"big\"\n");
    assert!(e.starts_with("config.toml:2:"), "{e}");
}

#[test]
fn syntax_error_is_placed() {
    let e = err("[rtmp]\nlisten = \n");
    assert!(e.starts_with("config.toml:2:"), "{e}");
}

#[test]
fn bad_listen_address() {
    let e = err("[http]\nlisten = \"localhost:80\"\n");
    assert!(e.starts_with("config.toml:2:10: http.listen: "), "{e}");
    assert!(e.contains("localhost:80"), "{e}");
    let e = err("[rtmp]\nlisten = \"0.0.0.0\"\n");
    assert!(e.contains("rtmp.listen"), "{e}");
}

#[test]
fn range_checks() {
    assert!(err("[rtmp]\nchunk_size = 127\n").contains("rtmp.chunk_size"));
    assert!(err("[rtmp]\nchunk_size = 65537\n").contains("rtmp.chunk_size"));
    assert!(err("[rtmp]\nhandshake_timeout_ms = 0\n").contains("rtmp.handshake_timeout_ms"));
    assert!(err("[rtmp]\nmax_message_bytes = 16777216\n").contains("rtmp.max_message_bytes"));
    assert!(err("[player]\nmax_queue_bytes = 0\n").contains("player.max_queue_bytes"));
    assert!(err("[player]\nmax_queue_ms = 0\n").contains("player.max_queue_ms"));
    assert!(err("[player]\nwrite_merge_ms = 1001\n").contains("player.write_merge_ms"));
    // A negative number is a type error from the parser, still placed.
    assert!(err("[player]\nmax_queue_ms = -1\n").starts_with("config.toml:2:"));
    let e = err(&format!("{CONTRACT}  max_queue_bytes = 0\n"));
    assert!(e.contains("route[0].target[0].max_queue_bytes"), "{e}");
}

fn with_url(url: &str) -> String {
    format!("[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"t\"\nurl = \"{url}\"\n")
}

#[test]
fn bad_urls() {
    for (url, want) in [
        ("http://h/live/{stream}", "unsupported scheme `http`"),
        ("a.rtmp.youtube.com/live2/x", "not a URL"),
        ("rtmp:///live/{stream}", "missing host"),
        ("rtmp://h", "app and a stream key"),
        ("rtmp://h/live", "app and a stream key"),
        ("rtmp://h/live/", "app and a stream key"),
        ("rtmp://h:0/live/x", "port"),
        ("rtmp://h:99999/live/x", "port"),
        ("rtmp://{app}.example/live/x", "invalid host"),
        ("rtmp://h/live/{key}", "unknown placeholder"),
        ("rtmp://h/live/a b", "whitespace"),
    ] {
        let e = err(&with_url(url));
        assert!(
            e.starts_with("config.toml:5:7: route[0].target[0].url: "),
            "{url}: {e}"
        );
        assert!(e.contains(want), "{url}: {e}");
    }
}

#[test]
fn url_errors_do_not_leak_keys() {
    let e = err(&with_url("rtmp://h/live/sekrit key"));
    assert!(!e.contains("sekrit"), "{e}");
}

#[test]
fn good_urls() {
    for url in [
        "rtmp://a.rtmp.youtube.com/live2/{stream}",
        "rtmp://127.0.0.1:1936/{app}/{stream}",
        "rtmp://[::1]:1935/live/{stream}?x=1",
        "rtmps://live-api-s.facebook.com:443/rtmp/{stream}",
        "rtmp://user:pass@h/app/inst/{stream}",
        "srt://h:9000",
        "srt://h:9000?streamid=#!::r={app}/{stream},m=publish&passphrase=xyz",
    ] {
        parse(&with_url(url)).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

#[test]
fn target_names() {
    let two = |a: &str, b: &str| {
        format!(
            "[[route]]\nstream = \"live/*\"\n\
             [[route.target]]\nname = \"{a}\"\nurl = \"rtmp://h/a/{{stream}}\"\n\
             [[route.target]]\nname = \"{b}\"\nurl = \"rtmp://h/b/{{stream}}\"\n"
        )
    };
    let e = err(&two("yt", "yt"));
    assert!(
        e.starts_with("config.toml:7:8: route[0].target[1].name: duplicate target name `yt`"),
        "{e}"
    );
    assert!(err(&two("", "b")).contains("route[0].target[0].name"));
    assert!(err(&two("a", "b c")).contains("route[0].target[1].name"));
    assert!(err(&two("a", "b:x")).contains("route[0].target[1].name"));
    parse(&two("yt-1.main", "Twitch_2")).unwrap();
}

#[test]
fn route_checks() {
    let e = err(
        "[[route]]\nstream = \"live\"\n[[route.target]]\nname = \"a\"\nurl = \"rtmp://h/a/b\"\n",
    );
    assert!(e.starts_with("config.toml:2:10: route[0].stream: "), "{e}");
    let e = err("[[route]]\nstream = \"live/*\"\n");
    assert!(e.contains("route[0]: route has no [[route.target]]"), "{e}");
    let e = err("[[route]]\n[[route.target]]\nname = \"a\"\nurl = \"rtmp://h/a/b\"\n");
    assert!(e.contains("missing field `stream`"), "{e}");
    assert!(e.starts_with("config.toml:"), "{e}");
}

const TWO_ROUTES: &str = r#"
[[route]]
stream = "live/*"
  [[route.target]]
  name = "youtube"
  url = "rtmp://a.rtmp.youtube.com/live2/{stream}"
  [[route.target]]
  name = "backup"
  url = "rtmp://10.0.0.2/{app}/{stream}"
  max_queue_ms = 500

[[route]]
stream = "live/vip-*"
  [[route.target]]
  name = "twitch"
  url = "rtmp://live.twitch.tv/app/{stream}"
  [[route.target]]
  name = "backup"
  url = "rtmp://10.0.0.3/other/{stream}"

[[route]]
stream = "*"
  [[route.target]]
  name = "archive"
  url = "rtmp://127.0.0.1:1936/{app}/{stream}"
"#;

#[test]
fn union_of_routes_first_name_wins() {
    let c = parse(TWO_ROUTES).unwrap();
    let got = c.targets_for("live", "vip-1");
    let names: Vec<_> = got.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["youtube", "backup", "twitch", "archive"]);
    let backup = &got[1];
    assert_eq!(backup.url, "rtmp://10.0.0.2/live/vip-1");
    assert_eq!(backup.queue.max_queue_ms, 500);

    let names: Vec<_> = c
        .targets_for("live", "plain")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["youtube", "backup", "archive"]);

    let other = c.targets_for("studio", "x");
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].url, "rtmp://127.0.0.1:1936/studio/x");
}

#[test]
fn template_expansion() {
    let c = parse(TWO_ROUTES).unwrap();
    let t = c.targets_for("live", "abcd-1234");
    assert_eq!(t[0].url, "rtmp://a.rtmp.youtube.com/live2/abcd-1234");
    assert_eq!(t[1].url, "rtmp://10.0.0.2/live/abcd-1234");
    // Templates are not re-expanded: a key containing a placeholder stays literal.
    let t = c.targets_for("live", "{app}");
    assert_eq!(t[0].url, "rtmp://a.rtmp.youtube.com/live2/{app}");
    assert!(parse(CONTRACT)
        .unwrap()
        .targets_for("other", "x")
        .is_empty());
}

#[test]
fn redaction() {
    for (url, want, secrets) in [
        (
            "rtmp://a.rtmp.youtube.com/live2/abcd-1234",
            "rtmp://a.rtmp.youtube.com/live2/<redacted>",
            &["abcd-1234"][..],
        ),
        (
            "rtmps://live-api-s.facebook.com:443/rtmp/FB-123?s_bl=1&a=b",
            "rtmps://live-api-s.facebook.com:443/rtmp/<redacted>?s_bl=<redacted>&a=<redacted>",
            &["FB-123", "s_bl=1"],
        ),
        (
            "rtmp://live.twitch.tv/app/live_123_abc?bandwidthtest=true",
            "rtmp://live.twitch.tv/app/<redacted>?bandwidthtest=<redacted>",
            &["live_123_abc", "true"],
        ),
        (
            "srt://ingest.example:9000?streamid=#!::r=live/k3y,m=publish&passphrase=hunter22",
            "srt://ingest.example:9000?streamid=<redacted>&passphrase=<redacted>",
            &["k3y", "hunter22"],
        ),
        (
            "srt://ingest.example:9000?passphrase=hunter22&latency=200",
            "srt://ingest.example:9000?passphrase=<redacted>&latency=<redacted>",
            &["hunter22"],
        ),
        (
            "rtmp://bob:s3cret@h:1935/app/key1",
            "rtmp://<redacted>@h:1935/app/<redacted>",
            &["bob", "s3cret", "key1"],
        ),
        (
            "rtmp://h/app/inst/key1#frag",
            "rtmp://h/app/inst/<redacted>",
            &["key1", "frag"],
        ),
        ("rtmp://[::1]:1935/live", "rtmp://[::1]:1935/live", &[]),
        ("rtmp://h/live/", "rtmp://h/live/", &[]),
        ("rtmp://h?tok3n", "rtmp://h?<redacted>", &["tok3n"]),
        ("not a url k3y", "<redacted>", &["k3y"]),
    ] {
        let got = redact_url(url);
        assert_eq!(got, want, "{url}");
        for s in secrets {
            assert!(!got.contains(s), "{url} leaked {s}: {got}");
        }
    }
}

#[test]
fn line_col_counts_chars() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 3), (2, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("é=\nx", 2), (1, 2));
    assert_eq!(line_col("x", 99), (1, 2));
}

#[test]
fn transport_tables() {
    let c = parse(
        r#"
[rtmps]
listen = "0.0.0.0:1936"
cert = "certs/chain.pem"
key = "certs/key.pem"

[rtmpt]
listen = "0.0.0.0:8080"
max_sessions = 10

[rtmpts]
listen = "0.0.0.0:8443"
cert = "/etc/prism/chain.pem"
key = "/etc/prism/key.pem"
session_timeout_ms = 5000

[[route]]
stream = "live/*"
  [[route.target]]
  name = "fb"
  url = "rtmps://live-api-s.facebook.com:443/rtmp/{stream}"
  ca = "private-ca.pem"
  tls_verify = false
"#,
    )
    .unwrap();
    let rtmps = c.rtmps.as_ref().unwrap();
    assert_eq!(rtmps.listen, "0.0.0.0:1936".parse().unwrap());
    assert_eq!(rtmps.tls.cert, PathBuf::from("certs/chain.pem"));
    let rtmpt = c.rtmpt.as_ref().unwrap();
    assert_eq!(rtmpt.max_sessions, 10);
    assert_eq!(rtmpt.session_timeout, Duration::from_secs(15));
    let (tunnel, tls) = c.rtmpts.as_ref().unwrap();
    assert_eq!(tunnel.session_timeout, Duration::from_secs(5));
    assert_eq!(tls.key, PathBuf::from("/etc/prism/key.pem"));
    let t = &c.targets_for("live", "k")[0];
    assert_eq!(t.tls.ca, Some(PathBuf::from("private-ca.pem")));
    assert!(!t.tls.verify);

    let mut resolved = c.clone();
    resolved.resolve_paths(Path::new("/srv/prism"));
    assert_eq!(
        resolved.rtmps.unwrap().tls.cert,
        PathBuf::from("/srv/prism/certs/chain.pem")
    );
    assert_eq!(
        resolved.routes[0].targets[0].tls.ca,
        Some(PathBuf::from("/srv/prism/private-ca.pem"))
    );
    // Absolute paths stay.
    assert_eq!(
        resolved.rtmpts.unwrap().1.cert,
        PathBuf::from("/etc/prism/chain.pem")
    );
}

#[test]
fn transport_table_mistakes() {
    let e = err("[rtmps]\nlisten = \"0.0.0.0:443\"\ncert = \"c.pem\"\n");
    assert!(e.contains("key"), "{e}");
    let e = err("[rtmpt]\nlisten = \"0.0.0.0:80\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
    assert!(e.contains("[rtmpts]"), "{e}");
    let e = err("[rtmpts]\nlisten = \"0.0.0.0:443\"\n");
    assert!(e.starts_with("config.toml:1:"), "{e}");
    let e = err("[rtmpt]\nlisten = \"0.0.0.0:80\"\nmax_sesions = 3\n");
    assert!(
        e.contains("config.toml:3:") && e.contains("max_sesions"),
        "{e}"
    );
    let e = err(
        "[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"a\"\nurl = \"rtmp://h/app/k\"\ntls_verify = false\n",
    );
    assert!(e.contains("rtmps://"), "{e}");
    // rtmpte:// is RTMPE in plain HTTP: no TLS options either.
    let e = err(
        "[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"a\"\nurl = \"rtmpte://h/app/k\"\nca = \"ca.pem\"\n",
    );
    assert!(
        e.contains("only apply to rtmps:// and rtmpts:// targets"),
        "{e}"
    );
}

#[test]
fn tunnelled_targets_parse_and_rtmpts_takes_tls_options() {
    let c = parse(
        "[[route]]\nstream = \"live/*\"\n\
         [[route.target]]\nname = \"t\"\nurl = \"rtmpt://proxy.example/live/{stream}\"\n\
         [[route.target]]\nname = \"te\"\nurl = \"rtmpte://proxy.example:8080/live/{stream}\"\n\
         [[route.target]]\nname = \"ts\"\nurl = \"rtmpts://proxy.example/live/{stream}\"\nca = \"ca.pem\"\ntls_verify = false\n",
    )
    .unwrap();
    let t = c.targets_for("live", "k");
    assert_eq!(t[0].url, "rtmpt://proxy.example/live/k");
    assert_eq!(t[1].url, "rtmpte://proxy.example:8080/live/k");
    assert_eq!(t[2].tls.ca, Some(PathBuf::from("ca.pem")));
    assert!(!t[2].tls.verify);
    assert!(crate::is_tls_target_url("rtmpts://h/a/b"));
    assert!(crate::is_tls_target_url("RTMPS://h/a/b"));
    assert!(!crate::is_tls_target_url("rtmpt://h/a/b"));
    assert!(!crate::is_tls_target_url("rtmpsx://h/a/b"));
}

#[test]
fn srt_table() {
    let c = parse(
        "[srt]\nlisten = \"0.0.0.0:9000\"\nlatency_ms = 200\npassphrase = \"correct horse battery\"\npbkeylen = 32\ndefault_stream = \"live/main\"\n",
    )
    .unwrap();
    let s = c.srt.unwrap();
    assert_eq!(s.listen, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(s.latency, Duration::from_millis(200));
    assert_eq!(
        s.passphrase.as_ref().unwrap().expose(),
        "correct horse battery"
    );
    assert_eq!(s.pbkeylen, 32);
    assert_eq!(s.default_stream.as_deref(), Some("live/main"));
    // Secrets never reach Debug output (configs get logged).
    let shown = format!("{s:?}");
    assert!(!shown.contains("horse"), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");

    let d = parse("[srt]\nlisten = \"127.0.0.1:9000\"\n")
        .unwrap()
        .srt
        .unwrap();
    assert_eq!(d.latency, Duration::from_millis(120));
    assert_eq!(
        (d.passphrase, d.pbkeylen, d.default_stream),
        (None, 16, None)
    );
    assert!(parse("").unwrap().srt.is_none());
}

#[test]
fn srt_table_is_strict() {
    let e = err("[srt]\nlisten = \"127.0.0.1:9000\"\npassphrase = \"short\"\n");
    assert!(e.contains("srt.passphrase") && e.contains("10..=79"), "{e}");
    assert!(
        !e.contains("short\""),
        "the passphrase must not be echoed: {e}"
    );
    let long = "x".repeat(80);
    let e = err(&format!(
        "[srt]\nlisten = \"127.0.0.1:9000\"\npassphrase = \"{long}\"\n"
    ));
    assert!(e.contains("srt.passphrase") && !e.contains(&long), "{e}");
    let e = err("[srt]\nlisten = \"127.0.0.1:9000\"\npassphrase = \"0123456789\"\npbkeylen = 20\n");
    assert!(e.contains("srt.pbkeylen"), "{e}");
    let e = err("[srt]\nlisten = \"127.0.0.1:9000\"\npbkeylen = 16\n");
    assert!(
        e.contains("srt.pbkeylen") && e.contains("passphrase"),
        "{e}"
    );
    let e = err("[srt]\nlisten = \"127.0.0.1:9000\"\ndefault_stream = \"nokey\"\n");
    assert!(e.contains("srt.default_stream"), "{e}");
    let e = err("[srt]\nlisten = \"127.0.0.1:9000\"\nlatency_ms = 70000\n");
    assert!(e.contains("srt.latency_ms"), "{e}");
    let e = err("[srt]\nlisten = \"nope\"\n");
    assert!(e.contains("srt.listen"), "{e}");
    let e = err("[srt]\nlisten = \"127.0.0.1:9000\"\nmode = \"caller\"\n");
    assert!(e.contains("mode"), "{e}");
    assert!(err("[srt]\nlatency_ms = 1\n").contains("listen"));
}

#[test]
fn http_token_is_checked_and_never_shown() {
    let c = Config::from_toml_str(
        "[http]\nlisten = \"0.0.0.0:9935\"\ntoken = \"0123456789abcdef-secret\"\n",
        "t.toml",
    )
    .unwrap();
    let token = c.http.token.as_ref().expect("token");
    assert_eq!(token.expose(), "0123456789abcdef-secret");
    assert!(!format!("{c:?}").contains("secret"));
    let e = Config::from_toml_str("[http]\ntoken = \"short-secret\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("http.token") && !e.contains("short-secret"),
        "{e}"
    );
    let e = Config::from_toml_str("[http]\ntoken = \"has a space in it, secret\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("http.token") && !e.contains("secret\""), "{e}");
}

#[test]
fn runtime_targets_are_checked_like_config_ones() {
    let t = ResolvedTarget::for_stream("yt", "rtmp://h/live/{stream}", "live", "k").unwrap();
    assert_eq!(t.url, "rtmp://h/live/k");
    assert_eq!(t.queue, QueueConfig::default());
    assert!(ResolvedTarget::for_stream("b c", "rtmp://h/live/x", "live", "k").is_err());
    assert!(ResolvedTarget::for_stream("a", "http://h/live/x", "live", "k").is_err());
    let e = ResolvedTarget::for_stream("a", "rtmp://h/live", "live", "k").unwrap_err();
    assert!(e.starts_with("url:"), "{e}");
    assert!(validate_target_name(&"x".repeat(65)).is_err());
}

const ACCESS: &str = r#"
[[route]]
stream = "live/open-*"
play = true

[[route]]
stream = "live/*"
publish_tokens = ["tok-aaaaaaaa", "tok-bbbbbbbb"]
allow_publish = ["10.0.0.0/8", "127.0.0.1", "::1"]
play = false

[[route]]
stream = "*"
allow_play = ["192.168.0.0/16"]
play_tokens = ["viewer-12345"]
  [[route.target]]
  name = "archive"
  url = "rtmp://127.0.0.1:1936/{app}/{stream}"
"#;

#[test]
fn access_rules_first_matching_route_decides_each() {
    let c = parse(ACCESS).unwrap();
    // Access-only routes need no target.
    assert!(c.routes[0].targets.is_empty());
    let a = c.access_for("live", "main");
    let tokens = a.publish_tokens.expect("tokens apply");
    assert!(tokens.iter().any(|t| t.matches("tok-bbbbbbbb")));
    assert!(!tokens.iter().any(|t| t.matches("tok-cccccccc")));
    assert_eq!(a.allow_publish.map(<[_]>::len), Some(3));
    assert!(!a.play);
    // play_tokens/allow_play come from the catch-all route.
    assert!(a.play_tokens.is_some() && a.allow_play.is_some());
    // The first route turns play on for open-*, the rest still applies.
    let a = c.access_for("live", "open-1");
    assert!(a.play);
    assert!(a.publish_tokens.is_some());
    // Other apps: only the catch-all.
    let a = c.access_for("other", "x");
    assert!(a.play && a.publish_tokens.is_none() && a.allow_publish.is_none());
    // No routes: everything open.
    let d = Config::default();
    let a = d.access_for("live", "x");
    assert!(a.play && a.publish_tokens.is_none() && a.allow_play.is_none());
    // Secrets stay out of Debug.
    assert!(!format!("{c:?}").contains("tok-aaaa"));
}

#[test]
fn access_rule_mistakes() {
    let route = |body: &str| format!("[[route]]\nstream = \"live/*\"\n{body}\n");
    let e = err(&route("allow_publish = [\"10.0.0.0/33\"]"));
    assert!(e.contains("route[0].allow_publish: `10.0.0.0/33`"), "{e}");
    let e = err(&route("allow_play = [\"10.1.2.3/8\"]"));
    assert!(e.contains("host bits"), "{e}");
    let e = err(&route("allow_publish = []"));
    assert!(e.contains("empty list"), "{e}");
    let e = err(&route("publish_tokens = [\"short\"]"));
    assert!(
        e.contains("route[0].publish_tokens: tokens must be 8 to 256"),
        "{e}"
    );
    assert!(!e.contains("short\""), "{e}");
    let e = err(&route("play_tokens = [\"has space in it\"]"));
    assert!(e.contains("may only use"), "{e}");
    assert!(!e.contains("has space"), "{e}");
    let e = err(&route("play = \"no\""));
    assert!(e.starts_with("config.toml:3:"), "{e}");
    let e = err(&route("publish_keys = [\"x\"]"));
    assert!(e.contains("unknown field `publish_keys`"), "{e}");
}

#[test]
fn auth_table() {
    let c = parse(
        "[auth]\non_publish = \"http://panel:8080/hook?k=1\"\non_play = \"http://127.0.0.1/p\"\ntimeout_ms = 500\ntoken = \"bearer-secret\"\n",
    )
    .unwrap();
    let p = c.auth.on_publish.as_ref().unwrap();
    assert_eq!(
        (p.host.as_str(), p.port, p.path.as_str()),
        ("panel", 8080, "/hook?k=1")
    );
    assert_eq!(c.auth.timeout, Duration::from_millis(500));
    assert_eq!(c.auth.token.as_ref().unwrap().expose(), "bearer-secret");
    let shown = format!("{:?}", c.auth);
    assert!(
        !shown.contains("bearer-secret") && !shown.contains("k=1"),
        "{shown}"
    );
    let e = err("[auth]\non_publish = \"https://panel/hook?secret=zzz\"\n");
    assert!(
        e.contains("auth.on_publish: https:// webhooks are not supported"),
        "{e}"
    );
    assert!(!e.contains("zzz"), "{e}");
    let e = err("[auth]\ntimeout_ms = 0\n");
    assert!(e.contains("auth.timeout_ms"), "{e}");
    let e = err("[auth]\ntoken = \"a b\"\n");
    assert!(e.contains("auth.token") && !e.contains("a b"), "{e}");
    assert!(err("[auth]\nonpublish = \"http://x/\"\n").contains("unknown field"));
}

#[test]
fn limits_table() {
    let c = parse(
        "[limits]\nmax_connections = 10\nmax_connections_per_ip = 2\nmax_streams = 3\nmax_targets_per_stream = 1\nmax_memory_mb = 256\n[rtmp]\nidle_timeout_ms = 1000\nmax_chunk_size = 65536\n",
    )
    .unwrap();
    assert_eq!(
        c.limits,
        Limits {
            max_connections: 10,
            max_connections_per_ip: 2,
            max_streams: 3,
            max_targets_per_stream: 1,
            max_transcodes: 4,
            max_memory_mb: 256,
        }
    );
    assert_eq!(c.rtmp.idle_timeout, Duration::from_secs(1));
    assert_eq!(c.rtmp.max_chunk_size, 65536);
    let e = err("[limits]\nmax_connections = 0\n");
    assert!(e.contains("limits.max_connections: must be > 0"), "{e}");
    let e = err("[rtmp]\nmax_chunk_size = 100\n");
    assert!(e.contains("rtmp.max_chunk_size"), "{e}");
    let e = err("[rtmp]\nidle_timeout_ms = 0\n");
    assert!(e.contains("rtmp.idle_timeout_ms"), "{e}");
    // A route with more targets than a stream may have.
    let e = err(
        "[limits]\nmax_targets_per_stream = 1\n[[route]]\nstream = \"*\"\n[[route.target]]\nname = \"a\"\nurl = \"rtmp://h/a/b\"\n[[route.target]]\nname = \"b\"\nurl = \"rtmp://h/a/c\"\n",
    );
    assert!(
        e.contains("route[0]: route has 2 targets, more than [limits] max_targets_per_stream (1)"),
        "{e}"
    );
}

/// `(table, keys)` of every TOML table, from the `section!` declarations.
fn declared_tables() -> Vec<(&'static str, Vec<&'static str>)> {
    // The keys of the shared tunnel table that only [rtmpts] takes.
    const TLS_KEYS: [&str; 2] = ["cert", "key"];
    let names = |keys: &[section::KeyDoc]| keys.iter().map(|k| k.name).collect::<Vec<_>>();
    let tunnel = names(section::rtmpt::RawTunnel::KEYS);
    vec![
        ("rtmp", names(RawRtmp::KEYS)),
        ("http", names(RawHttp::KEYS)),
        ("rtmps", names(RawTlsListener::KEYS)),
        ("stream", names(RawHub::KEYS)),
        ("player", names(RawQueue::KEYS)),
        (
            "rtmpt",
            tunnel
                .iter()
                .copied()
                .filter(|k| !TLS_KEYS.contains(k))
                .collect(),
        ),
        // [rtmpts] takes the [rtmpt] keys; default.toml shows the ones it needs.
        ("rtmpts", vec!["listen", "cert", "key"]),
        ("srt", names(RawSrt::KEYS)),
        (
            "rtsp",
            names(section::rtsp::RawRtsp::KEYS)
                .into_iter()
                .filter(|k| !TLS_KEYS.contains(k))
                .collect(),
        ),
        // [rtsps] takes the [rtsp] keys; default.toml shows the ones it needs.
        ("rtsps", vec!["listen", "cert", "key"]),
        ("hls", names(section::hls::RawHls::KEYS)),
        ("webrtc", names(section::webrtc::RawWebrtc::KEYS)),
        ("limits", names(RawLimits::KEYS)),
        ("auth", names(RawAuth::KEYS)),
        // `target` is the [[route.target]] sub-table, not a key.
        (
            "route",
            names(RawRoute::KEYS)
                .into_iter()
                .filter(|k| *k != "target")
                .collect(),
        ),
        ("route.target", names(section::target::RawTarget::KEYS)),
        ("source", names(section::source::RawSource::KEYS)),
        ("edge", names(section::edge::RawEdge::KEYS)),
        ("state", names(section::state::RawState::KEYS)),
    ]
}

/// `[table]` or `[[table]]`, commented out or not.
fn toml_header(l: &str) -> Option<&str> {
    let l = l.trim_start_matches('#').trim();
    let inner = l.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner.trim_start_matches('[').trim_end_matches(']');
    inner
        .chars()
        .all(|c| c.is_ascii_lowercase() || c == '.')
        .then_some(inner)
}

/// The key of `key = ...`, commented out or not (`# key = `, `#   key = `).
fn toml_key(l: &str) -> Option<&str> {
    let l = l.trim_start_matches(['#', ' ']);
    let (k, _) = l.split_once('=')?;
    let k = k.trim();
    (!k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')).then_some(k)
}

// config/default.toml is the reference operators copy: every key of every table is there
// (commented out for the tables that are off by default), and nothing that is not a key.
#[test]
fn default_toml_lists_every_key() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/default.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut found: Vec<(&str, Vec<&str>)> = Vec::new();
    for l in text.lines() {
        if let Some(h) = toml_header(l) {
            found.push((h, Vec::new()));
        } else if let (Some(k), Some((_, keys))) = (toml_key(l), found.last_mut()) {
            keys.push(k);
        }
    }
    for (table, keys) in declared_tables() {
        let listed = found
            .iter()
            .find(|(t, _)| *t == table)
            .unwrap_or_else(|| panic!("config/default.toml has no [{table}]"));
        for k in &keys {
            assert!(
                listed.1.contains(k),
                "config/default.toml [{table}] does not show `{k}`"
            );
        }
        for k in &listed.1 {
            assert!(
                keys.contains(k),
                "config/default.toml [{table}] shows `{k}`, which is not a key of the table"
            );
        }
    }
    // Every key has its doc line.
    for keys in [
        RawRtmp::KEYS,
        RawHttp::KEYS,
        RawTlsListener::KEYS,
        RawHub::KEYS,
        RawQueue::KEYS,
        section::rtmpt::RawTunnel::KEYS,
        RawSrt::KEYS,
        section::rtsp::RawRtsp::KEYS,
        section::hls::RawHls::KEYS,
        section::webrtc::RawWebrtc::KEYS,
        RawLimits::KEYS,
        RawAuth::KEYS,
        section::state::RawState::KEYS,
        RawRoute::KEYS,
        section::target::RawTarget::KEYS,
        section::source::RawSource::KEYS,
        section::edge::RawEdge::KEYS,
    ] {
        for k in keys {
            assert!(!k.doc.trim().is_empty(), "{} has no doc line", k.name);
        }
    }
}

#[test]
fn gop_cache_cap_is_checked() {
    let e = parse("[stream]\ngop_cache_max_bytes = 0\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("gop_cache_max_bytes") && e.contains("must be in"),
        "{e}"
    );
    assert_eq!(
        Config::default().hub.gop_cache_max_bytes,
        32 * 1024 * 1024,
        "the cap the hub had as a constant"
    );
}

#[test]
fn hls_section_and_route_switch() {
    let c = parse(
        "[hls]\nlisten = \"127.0.0.1:8080\"\n[[route]]\nstream = \"private/*\"\nhls = false\n",
    )
    .unwrap();
    let hls = c.hls.as_ref().unwrap();
    assert_eq!(hls.segment, std::time::Duration::from_secs(2));
    assert_eq!(hls.part, std::time::Duration::from_millis(200));
    assert_eq!(hls.window_segments, 6);
    assert_eq!(hls.allow_origin, "*");
    assert!(hls.tls.is_none());
    assert!(c.hls_for("live", "a"));
    assert!(!c.hls_for("private", "a"));
    assert!(
        !parse("").unwrap().hls_for("live", "a"),
        "off without [hls]"
    );
    let e = parse("[hls]\nlisten = \"127.0.0.1:8080\"\nsegment_ms = 1000\npart_ms = 600\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("hls.part_ms") && e.contains("half"), "{e}");
    let e = parse("[hls]\nlisten = \"127.0.0.1:8080\"\ncert = \"a.pem\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs `cert` and `key`"), "{e}");
    let e = parse("[hls]\nlisten = \"127.0.0.1:8080\"\nsegments = 3\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("segments"), "{e}");
}

#[test]
fn hls_container_global_and_per_route() {
    let c = parse(
        "[hls]\nlisten = \"127.0.0.1:8080\"\ncontainer = \"both\"\n\
         [[route]]\nstream = \"stb/*\"\ncontainer = \"ts\"\n\
         [[route]]\nstream = \"*\"\nplay = true\n",
    )
    .unwrap();
    assert_eq!(c.hls.as_ref().unwrap().container, HlsContainer::Both);
    assert_eq!(c.hls_container_for("stb", "a"), HlsContainer::Ts);
    assert_eq!(c.hls_container_for("live", "a"), HlsContainer::Both);
    let plain = parse("[hls]\nlisten = \"127.0.0.1:8080\"\n").unwrap();
    assert_eq!(plain.hls_container_for("live", "a"), HlsContainer::Fmp4);

    let e = err("[hls]\nlisten = \"127.0.0.1:8080\"\ncontainer = \"mp4\"\n");
    assert!(
        e.contains("config.toml:3:") && e.contains("hls.container") && e.contains("\"ts\""),
        "{e}"
    );
    let e = err("[[route]]\nstream = \"*\"\ncontainer = \"TS\"\n");
    assert!(
        e.contains("config.toml:3:") && e.contains("route[0].container"),
        "{e}"
    );
}

#[test]
fn rtsp_table() {
    assert!(parse("").unwrap().rtsp.is_none());
    let c = parse("[rtsp]\nlisten = \"0.0.0.0:8554\"\n")
        .unwrap()
        .rtsp
        .unwrap();
    assert_eq!(c.listen.port(), 8554);
    assert_eq!(c.session_timeout, std::time::Duration::from_secs(60));
    let e = err("[rtsp]\nlisten = \"0.0.0.0:8554\"\nsession_timeout_ms = 10\n");
    assert!(e.contains("rtsp.session_timeout_ms"), "{e}");
    let e = err("[rtsp]\nlisten = \"0.0.0.0:8554\"\nbogus = 1\n");
    assert!(e.contains("bogus"), "{e}");
    let e = err("[rtsp]\n");
    assert!(e.contains("listen"), "{e}");
    let e = err("[rtsp]\nlisten = \"0.0.0.0:8554\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n");
    assert!(e.contains("[rtsps]"), "{e}");
    let c =
        parse("[rtsps]\nlisten = \"0.0.0.0:8322\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n").unwrap();
    let (l, tls) = c.rtsps.unwrap();
    assert_eq!((l.listen.port(), tls.cert.to_str()), (8322, Some("c.pem")));
    let e = err("[rtsps]\nlisten = \"0.0.0.0:8322\"\n");
    assert!(e.contains("rtsps") && e.contains("cert"), "{e}");
}

#[test]
fn webrtc_table() {
    let c = parse(
        "[webrtc]\nlisten = \"0.0.0.0:8889\"\nudp = \"0.0.0.0:8189\"\npublic_ips = [\"203.0.113.7\"]\nice_servers = [\"stun:stun.example.org:3478\"]\n",
    )
    .unwrap();
    let w = c.webrtc.unwrap();
    assert_eq!(w.udp, "0.0.0.0:8189".parse().unwrap());
    assert_eq!(
        w.public_ips,
        vec!["203.0.113.7".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        w.ice_servers,
        vec!["stun:stun.example.org:3478".to_string()]
    );
    assert_eq!((w.max_sessions, w.max_sessions_per_ip), (1000, 20));
    assert!(w.tls.is_none());
    assert!(parse("").unwrap().webrtc.is_none());
    let base = "[webrtc]\nlisten = \"127.0.0.1:8889\"\nudp = \"127.0.0.1:8189\"\n";
    let e = err(&format!("{base}public_ips = [\"0.0.0.0\"]\n"));
    assert!(e.contains("webrtc.public_ips"), "{e}");
    let e = err(&format!("{base}ice_servers = [\"http://x\"]\n"));
    assert!(e.contains("webrtc.ice_servers"), "{e}");
    let e = err(&format!("{base}cert = \"c.pem\"\n"));
    assert!(e.contains("webrtc") && e.contains("key"), "{e}");
    let e = err(&format!("{base}tcp = true\n"));
    assert!(e.contains("tcp"), "{e}");
    let e = err("[webrtc]\nlisten = \"127.0.0.1:8889\"\n");
    assert!(e.contains("udp"), "{e}");
}

const LADDER: &str = r#"
[[transcode]]
stream = "live/*"
  [[transcode.rendition]]
  name = "720p"
  video = { codec = "h264", width = 1280, height = 720, bitrate_kbps = 2500, fps = 30, preset = "veryfast" }
  audio = { codec = "aac", bitrate_kbps = 128 }
  [[transcode.rendition]]
  name = "480p"
  video = { codec = "h264", width = 854, height = 480, bitrate_kbps = 1000 }
  encoder = "h264_nvenc"
  [[transcode.rendition]]
  name = "audio"
  video = "none"
"#;

#[test]
fn transcode_ladder_parses() {
    let c = parse(LADDER).unwrap();
    assert_eq!(c.limits.max_transcodes, 4);
    let t = c.transcode_for("live", "cam").unwrap();
    assert!(c.transcode_for("other", "cam").is_none());
    assert_eq!(t.ffmpeg_path(), PathBuf::from("ffmpeg"));
    let names: Vec<_> = t.renditions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["720p", "480p", "audio"]);
    let v = t.renditions[0].video.as_ref().unwrap();
    assert_eq!(
        (v.width, v.height, v.bitrate_kbps, v.fps),
        (1280, 720, 2500, Some(30))
    );
    assert_eq!(t.renditions[0].video_encoder(), Some("libx264"));
    assert_eq!(t.renditions[1].video_encoder(), Some("h264_nvenc"));
    // Audio defaults to AAC 128 kb/s.
    assert_eq!(t.renditions[1].audio.as_ref().unwrap().bitrate_kbps, 128);
    assert!(t.renditions[2].video.is_none());
    assert_eq!(t.renditions[2].video_encoder(), None);
}

#[test]
fn transcode_errors_are_placed() {
    let cases: &[(&str, &str)] = &[
        (
            "[[transcode]]\nstream = \"live/*\"\n",
            "config.toml:2:10: transcode[0]: a ladder needs at least one [[transcode.rendition]]",
        ),
        (
            "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"a b\"\nvideo = \"none\"\n",
            "config.toml:4:8: transcode[0].rendition[0].name: `a b` must be",
        ),
        (
            "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"a\"\nvideo = \"none\"\n[[transcode.rendition]]\nname = \"a\"\nvideo = \"none\"\n",
            "config.toml:7:8: transcode[0].rendition[1].name: duplicate rendition name `a`",
        ),
        (
            "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"a\"\nvideo = { width = 853, height = 480, bitrate_kbps = 900 }\n",
            "config.toml:5:9: transcode[0].rendition[0].video: width must be an even number",
        ),
        (
            "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"a\"\nvideo = { codec = \"vp9\", width = 640, height = 360, bitrate_kbps = 900 }\n",
            "video: codec `vp9` is not supported",
        ),
        (
            "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"a\"\nvideo = { width = 640, height = 360, bitrate_kbps = 900, preset = \"quick\" }\n",
            "preset `quick` is not an x264 preset",
        ),
        (
            "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"a\"\nvideo = \"nope\"\n",
            "transcode[0].rendition[0].video: `nope`: must be a table",
        ),
        (
            "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"a\"\nvideo = \"none\"\naudio = \"none\"\n",
            "video and audio are both \"none\"",
        ),
        (
            "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"a\"\n",
            "transcode[0].rendition[0].video: missing",
        ),
        (
            "[[transcode]]\nstream = \"live/*\"\n[[transcode.rendition]]\nname = \"a\"\nvideo = \"none\"\nencoder = \"h264_nvenc\"\n",
            "encoder: only applies to a rendition with video",
        ),
        (
            "[[transcode]]\nstream = \"live/*\"\nbogus = 1\n[[transcode.rendition]]\nname = \"a\"\nvideo = \"none\"\n",
            "unknown field `bogus`",
        ),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.contains(want), "{text}\n=> {e}\nwanted {want}");
    }
}

#[test]
fn rendition_targets_push_the_rendition() {
    let c = parse(&format!(
        "{LADDER}[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"full\"\nurl = \"rtmp://h/a/{{stream}}\"\n[[route.target]]\nname = \"capped\"\nurl = \"rtmp://h/b/{{stream}}\"\nrendition = \"480p\"\n"
    ))
    .unwrap();
    let names = |app, key| {
        c.targets_for(app, key)
            .into_iter()
            .map(|t| (t.name, t.url))
            .collect::<Vec<_>>()
    };
    // The source pushes the targets without a rendition.
    assert_eq!(
        names("live", "cam"),
        [("full".into(), "rtmp://h/a/cam".into())]
    );
    // The rendition stream pushes its own, with {stream} = the source's key.
    assert_eq!(
        names("live", "cam_480p"),
        [("capped".into(), "rtmp://h/b/cam".into())]
    );
    // Other renditions push nothing; a key that only looks like one is a source.
    assert!(names("live", "cam_720p").is_empty());
    assert_eq!(
        c.rendition_of("live", "my_cam_480p"),
        Some(("my_cam", "480p"))
    );
    assert_eq!(c.rendition_of("live", "cam_1080p"), None);
    assert_eq!(names("live", "cam_1080p").len(), 1);
    let e = err(&format!(
        "{LADDER}[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"x\"\nurl = \"rtmp://h/b/{{stream}}\"\nrendition = \"4k\"\n"
    ));
    assert!(
        e.contains("route[0].target[0].rendition: no [[transcode.rendition]] is named `4k`"),
        "{e}"
    );
}

#[test]
fn target_audio() {
    let c = parse(
        "[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"a\"\nurl = \"rtmp://h/app/{stream}\"\n[[route.target]]\nname = \"b\"\nurl = \"rtmp://h/app/{stream}\"\naudio = \"copy\"\n",
    )
    .unwrap();
    let t = c.targets_for("live", "k");
    assert_eq!(t[0].audio, crate::TargetAudio::Aac);
    assert_eq!(t[1].audio, crate::TargetAudio::Copy);
    let e = err(
        "[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"a\"\nurl = \"rtmp://h/app/k\"\naudio = \"mp3\"\n",
    );
    assert!(
        e.contains("config.toml:6:9: route[0].target[0].audio: `mp3` is not a target audio mode"),
        "{e}"
    );
}

#[test]
fn rtmpe_is_opt_in_and_rtmpe_targets_parse() {
    assert!(!parse(CONTRACT).unwrap().rtmp.rtmpe);
    let on = CONTRACT
        .replacen(
            "listen = \"0.0.0.0:1935\"\n",
            "listen = \"0.0.0.0:1935\"\nrtmpe = true\n",
            1,
        )
        .replace("rtmp://a.rtmp.youtube.com", "rtmpe://legacy.example");
    let c = parse(&on).unwrap();
    assert!(c.rtmp.rtmpe);
    assert_eq!(
        c.routes[0].targets[0].url,
        "rtmpe://legacy.example/live2/{stream}"
    );
    let e = err(&CONTRACT.replacen("[rtmp]\n", "[rtmp]\nrtmpe = 1\n", 1));
    assert!(
        e.contains("config.toml:3") && e.contains("expected a boolean"),
        "{e}"
    );
}

#[test]
fn target_tracks() {
    let c = parse(
        "[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"a\"\nurl = \"rtmp://h/app/{stream}\"\nvideo_track = 0\naudio_track = 0\n[[route.target]]\nname = \"b\"\nurl = \"rtmp://h/app/{stream}\"\nvideo_track = 1\n[[route.target]]\nname = \"c\"\nurl = \"rtmp://h/app/{stream}\"\n",
    )
    .unwrap();
    let t = c.targets_for("live", "k");
    assert_eq!(
        t[0].tracks,
        crate::TargetTracks {
            video: Some(0),
            audio: Some(0)
        }
    );
    assert_eq!(
        t[1].tracks,
        crate::TargetTracks {
            video: Some(1),
            audio: None
        }
    );
    assert_eq!(t[2].tracks, crate::TargetTracks::default());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let m = Config::load(&dir.join("multitrack.toml")).unwrap();
    let picks: Vec<_> = m
        .targets_for("live", "k")
        .iter()
        .map(|t| t.tracks.video)
        .collect();
    assert_eq!(picks, [Some(0), Some(1)]);
    let e = err(
        "[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"a\"\nurl = \"rtmp://h/app/k\"\nvideo_track = 256\n",
    );
    assert!(
        e.contains(
            "config.toml:6:15: route[0].target[0].video_track: `256` is not a track id: 0 to 255"
        ),
        "{e}"
    );
    let e = err(
        "[[route]]\nstream = \"live/*\"\n[[route.target]]\nname = \"a\"\nurl = \"rtmp://h/app/k\"\naudio_track = \"1\"\n",
    );
    assert!(
        e.contains("config.toml:6:15") && e.contains("expected i64"),
        "{e}"
    );
}

#[test]
fn rtmp_reconnect_url() {
    assert_eq!(Config::default().rtmp.reconnect_url, None);
    let c = parse("[rtmp]\nreconnect_url = \"rtmp://b.example/live\"\n").unwrap();
    assert_eq!(
        c.rtmp.reconnect_url.as_deref(),
        Some("rtmp://b.example/live")
    );
    let e = err("[rtmp]\nreconnect_url = \"http://b.example/live\"\n");
    assert!(
        e.contains("config.toml:2:17: rtmp.reconnect_url: `http://b.example/live` is not an rtmp:// or rtmps:// URL"),
        "{e}"
    );
}
