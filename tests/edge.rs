//! On-demand pulling: an `on_demand` source pulls only while a player wants its stream, and
//! an `[edge]` Prism pulls a stream from its origin Prism when players ask for it (one pull
//! for all of them), stops after they leave, and ends the wait of players of a stream the
//! origin does not have.

mod common;

use common::api::Api;
use common::*;
use std::time::{Duration, Instant};

fn base(rtmp: u16, http: u16, extra: &str) -> String {
    format!(
        "[rtmp]\nlisten = \"127.0.0.1:{rtmp}\"\n\n[http]\nlisten = \"127.0.0.1:{http}\"\n\n{extra}\n"
    )
}

fn source_state(api: &Api, stream: &str) -> Option<String> {
    let r = api.call("GET", &format!("/api/v1/sources/{stream}"), None);
    (r.status == 200).then(|| r.json()["state"].as_str().unwrap_or("").to_owned())
}

#[test]
fn on_demand_source_pulls_only_while_played() {
    let clip = make_clip(5);
    let nginx = Nginx::start();
    let mut origin = Publisher::start(&nginx.rtmp_url("app", "cam"), &clip, true);
    nginx.wait_bytes_in("cam", 50_000, Duration::from_secs(15));
    let prism = Prism::start(&base(
        free_port(),
        free_port(),
        &format!(
            "[[source]]\nstream = \"live/cam\"\nurl = \"{}\"\non_demand = true\nclose_after_idle_ms = 1000\n",
            nginx.rtmp_url("app", "cam")
        ),
    ));
    let api = Api::new(prism.http_addr.unwrap(), None);
    wait_until(Duration::from_secs(5), "the source to idle", || {
        source_state(&api, "live/cam").as_deref() == Some("idle")
    });
    // Nobody plays: nothing is pulled (only the publisher is nginx's client).
    assert_eq!(nginx.nclients("cam"), Some(1), "{}", nginx.stat_xml());
    assert_eq!(prism.metric_value("prism_streams_active"), Some(0.0));

    let frames = decode_ok(&prism.rtmp_url("live", "cam"), Duration::from_secs(25))
        .unwrap_or_else(|e| panic!("{e}\n{}", prism.stderr()));
    assert!(frames >= 25, "decoded {frames} frames");
    // The player left: the pull stops after close_after_idle_ms.
    wait_until(
        Duration::from_secs(10),
        "the source to stop pulling",
        || {
            source_state(&api, "live/cam").as_deref() == Some("idle")
                && prism.metric_value("prism_streams_active") == Some(0.0)
        },
    );
    wait_until(Duration::from_secs(10), "nginx to lose its player", || {
        nginx.nclients("cam") == Some(1)
    });
    assert!(
        prism.metric_value("prism_source_bytes_received_total{stream=\"live/cam\"}")
            > Some(50_000.0)
    );
    origin.kill();
}

#[test]
fn edge_pulls_once_for_many_players_and_lets_go() {
    let clip = make_clip(5);
    let (origin_rtmp, origin_http) = (free_port(), free_port());
    let origin = Prism::start(&base(origin_rtmp, origin_http, ""));
    let mut publisher = Publisher::start(&origin.rtmp_url("live", "show"), &clip, true);
    wait_until(Duration::from_secs(10), "the origin stream", || {
        origin.metric_value("prism_streams_active") == Some(1.0)
    });
    let edge = Prism::start(&base(
        free_port(),
        free_port(),
        &format!(
            "[edge]\norigin = \"rtmp://127.0.0.1:{origin_rtmp}/{{app}}/{{stream}}\"\nclose_after_idle_ms = 1000\n"
        ),
    ));
    let edge_api = Api::new(edge.http_addr.unwrap(), None);

    // Three players at once: one pull.
    let url = edge.rtmp_url("live", "show");
    let players: Vec<NullPlayer> = (0..3).map(|_| NullPlayer::start(&url)).collect();
    wait_until(Duration::from_secs(20), "three edge players", || {
        edge.metric_value("prism_players_active{stream=\"live/show\"}") == Some(3.0)
    });
    wait_until(Duration::from_secs(20), "the edge to pull", || {
        edge.metric_value("prism_source_up{stream=\"live/show\"}") == Some(1.0)
    });
    assert_eq!(
        origin.metric_value("prism_players_active{stream=\"live/show\"}"),
        Some(1.0),
        "the origin should see one player (the edge)"
    );
    let pulls = edge.stderr().matches("edge: pulling the stream").count();
    assert_eq!(pulls, 1, "{}", edge.stderr());
    let r = edge_api.call("GET", "/api/v1/sources/live/show", None);
    assert_eq!(r.json()["origin"], "edge", "{}", r.body);
    // A fourth player decodes what the edge serves.
    decode_ok(&url, Duration::from_secs(20)).unwrap();
    for p in &players {
        assert!(p.stderr().is_empty(), "player: {}", p.stderr());
    }

    // The players leave: the edge stops pulling, the origin loses its player.
    drop(players);
    wait_until(Duration::from_secs(15), "the edge to stop pulling", || {
        origin.metric_value("prism_players_active{stream=\"live/show\"}") == Some(0.0)
    });
    wait_until(Duration::from_secs(5), "the edge source to go", || {
        edge_api
            .call("GET", "/api/v1/sources/live/show", None)
            .status
            == 404
            && edge.metric_value("prism_streams_active") == Some(0.0)
    });

    // A stream the origin does not have: the player's wait ends within a bound.
    let t0 = Instant::now();
    let r = decode(
        &edge.rtmp_url("live", "missing"),
        Some(3.0),
        Duration::from_secs(30),
    )
    .expect("the player of a missing stream returns");
    assert_eq!(r.video_frames, 0);
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t0.elapsed()
    );
    // (Its metric series go with the edge source once nobody waits: the log stays.)
    let log = edge.stderr();
    assert!(
        log.contains("not_found") && log.contains("live/missing"),
        "{log}"
    );
    assert!(log.contains("no origin has the stream"), "{log}");
    eprintln!("[edge] missing stream ended after {:?}", t0.elapsed());
    publisher.kill();
}

/// `origins` are tried in order: the first one is down, the second serves the stream over
/// SRT (`m=request` to the origin Prism's `[srt]` listener).
#[test]
fn edge_falls_through_to_an_srt_origin() {
    let clip = make_clip(5);
    let (origin_rtmp, srt) = (free_port(), free_udp_port());
    let origin = Prism::start(&base(
        origin_rtmp,
        free_port(),
        &format!("[srt]\nlisten = \"127.0.0.1:{srt}\"\n"),
    ));
    let mut publisher = Publisher::start(&origin.rtmp_url("live", "srtshow"), &clip, true);
    wait_until(Duration::from_secs(10), "the origin stream", || {
        origin.metric_value("prism_streams_active") == Some(1.0)
    });
    let dead = free_port();
    let edge = Prism::start(&base(
        free_port(),
        free_port(),
        &format!(
            "[edge]\norigins = [\"rtmp://127.0.0.1:{dead}/{{app}}/{{stream}}\", \
             \"srt://127.0.0.1:{srt}?streamid=#!::r={{app}}/{{stream}},m=request\"]\n\
             close_after_idle_ms = 1000\n"
        ),
    ));
    let frames = decode_ok(&edge.rtmp_url("live", "srtshow"), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", edge.stderr()));
    assert!(frames >= 25, "decoded {frames} frames");
    let log = edge.stderr();
    // The first origin was tried first and refused the connection.
    assert!(
        log.contains("source down: Connection refused")
            && log.contains(&format!("127.0.0.1:{dead}"))
            && log.contains("reason=\"connect\""),
        "{log}"
    );
    assert!(
        origin.metric_value("prism_connections_total{transport=\"srt\"}") >= Some(1.0),
        "{}",
        origin.metrics()
    );
    publisher.kill();
}
