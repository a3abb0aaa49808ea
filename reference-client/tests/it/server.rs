//! The client against the reference server, in-process: handshakes, streaming and rendering, large and
//! fragmented frames counted by the server, the concurrent-writers fault, snapshot and reconnect.

use std::time::Duration;

use acip::{Dialect, PacketType};
use reference_client::{run, Client, ClientConfig, ClientFaults, StopAfter, Target};
use reference_server::{ServerConfig, ServerHandle};

const WAIT: Duration = Duration::from_secs(10);

async fn server(dialect: Dialect, password: Option<&str>) -> ServerHandle {
    let cfg = ServerConfig {
        dialect,
        password: password.map(str::to_string),
        rng_seed: Some(3),
        ..ServerConfig::loopback()
    };
    reference_server::start(cfg).await.unwrap()
}

fn target(s: &ServerHandle, ws: bool) -> Target {
    if ws {
        Target::ws(s.ws_addr().unwrap())
    } else {
        Target::tcp(s.tcp_addr().unwrap())
    }
}

fn client_config(s: &ServerHandle, ws: bool, dialect: Dialect) -> ClientConfig {
    ClientConfig { dialect, fps: 60, frame: (64, 48), seed: 5, tag: 9, ..ClientConfig::new(target(s, ws)) }
}

/// Test-pattern frames the server received intact (it counts packets by their outer type, so encrypted
/// frames are under ENCRYPTED; its pattern tracker sees them all).
fn image_frames(s: &ServerHandle) -> u64 {
    s.stats().counters.frames_received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_transport_and_mode_against_the_reference_server() {
    const PASSWORD: &str = "reference password";
    let creds = reference_client::Credentials {
        password: Some(acip::crypto::Password::derive(PASSWORD).unwrap()),
        identity: None,
    };
    for dialect in [Dialect::Feb, Dialect::Head] {
        for with_password in [false, true] {
            let srv = server(dialect, with_password.then_some(PASSWORD)).await;
            for ws in [false, true] {
                for encrypt in [false, true] {
                    let label = format!("{dialect} ws={ws} encrypt={encrypt} password={with_password}");
                    let mut cfg = client_config(&srv, ws, dialect);
                    cfg.encrypt = encrypt;
                    let creds = if with_password {
                        cfg.password = Some(PASSWORD.into());
                        creds.clone()
                    } else {
                        Default::default()
                    };
                    let before = image_frames(&srv);
                    let client = Client::connect_with(&cfg, &creds, None)
                        .await
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                    // AUTH (no encryption, a password) still encrypts on WebSocket (ACIP-SPEC.md 3.3, 4.4).
                    assert_eq!(client.is_encrypted(), encrypt || (ws && with_password), "{label}");
                    for seq in 0..3 {
                        client.send_frame(seq, 0).await.unwrap_or_else(|e| panic!("{label}: {e}"));
                    }
                    client.wait_ascii_frames(1, WAIT).await.unwrap_or_else(|e| panic!("{label}: {e}"));
                    assert!(
                        srv.wait_until(WAIT, |s| image_frames(s) == before + 3).await,
                        "{label}: {:?}",
                        srv.stats().counters
                    );
                    let report = client.close().await;
                    assert!(!report.has_validation_errors(), "{label}: {:?}", report.counters.errors);
                    assert!(report.last_server_state.is_some(), "{label}");
                }
            }
            assert!(srv.wait_until(WAIT, |s| s.slots_in_use() == 0).await);
            let errors = srv.stats().counters.errors;
            assert!(errors.is_empty(), "{dialect} password={with_password}: server errors {errors:?}");
            srv.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_streams_renders_and_tears_down() {
    let srv = server(Dialect::Head, None).await;
    let cfg = ClientConfig {
        stop: StopAfter::Frames(30),
        linger: Duration::from_millis(100),
        ..client_config(&srv, true, Dialect::Head)
    };
    let report = run(cfg, None).await.unwrap();
    assert_eq!(report.frames_sent(), 30);
    assert!(report.ascii_frames >= 2, "{}", report.summary());
    let text = report.snapshot.as_deref().unwrap();
    assert!(!text.trim().is_empty());
    assert!(report.stages.count(acip::stats::Stage::AsciiInterval) >= 1);
    assert!(srv.wait_until(WAIT, |s| s.slots_in_use() == 0 && s.connections() == 0).await);
    assert_eq!(image_frames(&srv), 30);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragmented_320x240_frame_and_a_640x480_frame_are_counted_by_the_server() {
    let srv = server(Dialect::Feb, None).await;
    // 230,446 bytes in 4096-byte WebSocket fragments (the SIGABRT repro of ACIP-SPEC.md section 8).
    let cfg = ClientConfig {
        encrypt: false,
        frame: (320, 240),
        ws_fragment: Some(4096),
        ..client_config(&srv, true, Dialect::Feb)
    };
    let client = Client::connect(&cfg, None).await.unwrap();
    client.send_frame(0, 0).await.unwrap();
    assert!(srv.wait_until(WAIT, |s| image_frames(s) == 1).await);
    assert_eq!(client.report().counters.tx(PacketType::IMAGE_FRAME), 1);
    // 57 fragments (56 of 4096 bytes and one of 1,070): the server timed 56 gaps between them.
    let gaps = srv.stats().stages.get("fragment_gap").map_or(0, |s| s.count);
    assert!(gaps >= 56, "fragment gaps seen by the server: {gaps}");
    client.close().await;
    // 921,646 bytes, TCP and WebSocket, plaintext and encrypted.
    for (ws, encrypt) in [(false, false), (false, true), (true, false), (true, true)] {
        let before = image_frames(&srv);
        let cfg = ClientConfig { encrypt, frame: (640, 480), ..client_config(&srv, ws, Dialect::Feb) };
        let client = Client::connect(&cfg, None).await.unwrap();
        client.send_frame(0, 0).await.unwrap();
        assert!(srv.wait_until(WAIT, |s| image_frames(s) == before + 1).await, "ws={ws} encrypt={encrypt}");
        client.close().await;
    }
    let c = srv.stats().counters;
    assert_eq!((c.frames_corrupt, c.total_errors()), (0, 0), "{c:?}");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_make_the_server_see_binary_before_fin() {
    let srv = server(Dialect::Feb, None).await;
    // A single writer with the same fragmentation: every frame arrives.
    let cfg = ClientConfig {
        encrypt: false,
        frame: (320, 240),
        ws_fragment: Some(4096),
        ..client_config(&srv, true, Dialect::Feb)
    };
    let client = Client::connect(&cfg, None).await.unwrap();
    for seq in 0..10 {
        client.send_frame(seq, 0).await.unwrap();
    }
    assert!(srv.wait_until(WAIT, |s| image_frames(s) == 10).await);
    client.close().await;
    assert!(srv.stats().counters.errors.is_empty());

    // Two writers, locking per fragment: the server sees a data frame before the previous FIN.
    let cfg = ClientConfig { faults: ClientFaults { concurrent_writers: true }, ..cfg };
    let client = Client::connect(&cfg, None).await.unwrap();
    for seq in 0..10 {
        if client.send_frame(seq, 0).await.is_err() {
            break;
        }
    }
    let seen =
        srv.wait_until(WAIT, |s| s.stats().counters.errors.contains_key("data_frame_before_fin")).await;
    assert!(seen, "{:?}", srv.stats().counters.errors);
    client.close().await;
    assert!(srv.wait_until(WAIT, |s| s.slots_in_use() == 0).await);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_and_reconnect_against_the_reference_server() {
    let srv = server(Dialect::Feb, None).await;
    let snap =
        run(ClientConfig { snapshot: true, ..client_config(&srv, false, Dialect::Feb) }, None).await.unwrap();
    assert!(snap.snapshot.as_deref().is_some_and(|t| !t.trim().is_empty()));

    let cfg =
        ClientConfig { reconnect: 10, stop: StopAfter::Frames(1), ..client_config(&srv, true, Dialect::Feb) };
    let report = run(cfg, None).await.unwrap();
    assert_eq!((report.sessions, report.frames_sent()), (10, 10));
    assert!(srv.wait_until(WAIT, |s| s.slots_in_use() == 0).await, "slots left: {}", srv.slots_in_use());
    assert_eq!(srv.stats().counters.connections_closed, 11);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_key_on_the_whitelist_gets_in_and_another_does_not() {
    let dir = std::env::temp_dir().join(format!("reference-client-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (good, bad) = (dir.join("good.key"), dir.join("bad.key"));
    std::fs::write(&good, [0x11u8; 32]).unwrap();
    std::fs::write(&bad, "22".repeat(32)).unwrap();
    let allowed = ed25519_dalek::SigningKey::from_bytes(&[0x11; 32]).verifying_key().to_bytes();
    let cfg = ServerConfig { client_keys: vec![allowed], rng_seed: Some(4), ..ServerConfig::loopback() };
    let srv = reference_server::start(cfg).await.unwrap();
    for ws in [false, true] {
        let cfg = ClientConfig { key: Some(good.clone()), ..client_config(&srv, ws, Dialect::Feb) };
        let client = Client::connect(&cfg, None).await.unwrap_or_else(|e| panic!("ws={ws}: {e}"));
        client.send_frame(0, 0).await.unwrap();
        client.wait_ascii_frames(1, WAIT).await.unwrap();
        client.close().await;
        let cfg = ClientConfig { key: Some(bad.clone()), ..cfg };
        let err = Client::connect(&cfg, None).await.err().unwrap();
        assert_eq!(err.exit_code(), 5, "ws={ws}: {err}");
    }
    srv.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_written_before_close_are_all_counted() {
    let srv = server(Dialect::Feb, None).await;
    for ws in [false, true] {
        let before = image_frames(&srv);
        let cfg = client_config(&srv, ws, Dialect::Feb);
        let client = Client::connect(&cfg, None).await.unwrap();
        for seq in 0..50 {
            client.send_frame(seq, 0).await.unwrap();
        }
        // Close at once: the server must still take every frame already on the wire.
        client.close().await;
        assert!(srv.wait_until(WAIT, |s| s.slots_in_use() == 0 && s.connections() == 0).await);
        assert_eq!(image_frames(&srv) - before, 50, "ws={ws}: {:?}", srv.stats().counters);
    }
    srv.shutdown().await;
}
