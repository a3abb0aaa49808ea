//! Client sessions against the in-test peer: handshake matrix, streaming, fragmentation, faults,
//! snapshot, reconnect, close and validation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acip::crypto::{CryptoMode, Password};
use acip::{Dialect, PacketType};
use reference_client::{
    run, Client, ClientConfig, ClientError, ClientEvent, ClientFaults, ClientObserver, StopAfter, Target,
};

use crate::peer::{Peer, PeerConfig};

const WAIT: Duration = Duration::from_secs(10);

fn target(peer: &Peer, ws: bool) -> Target {
    if ws {
        Target::ws(peer.addr)
    } else {
        Target::tcp(peer.addr)
    }
}

fn config(peer: &Peer, ws: bool, dialect: Dialect) -> ClientConfig {
    ClientConfig { dialect, fps: 200, seed: 11, tag: 0xC0FFEE, ..ClientConfig::new(target(peer, ws)) }
}

/// The password both sides use; derived once (Argon2id costs 64 MiB).
fn password() -> &'static (String, Password) {
    static P: std::sync::OnceLock<(String, Password)> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let p = "correct horse battery".to_string();
        let d = Password::derive(&p).unwrap();
        (p, d)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_transport_and_mode_handshakes_and_streams() {
    let creds_pw = reference_client::Credentials { password: Some(password().1.clone()), identity: None };
    for dialect in [Dialect::Feb, Dialect::Head] {
        for ws in [false, true] {
            for (encrypt, with_password) in [(false, false), (true, false), (true, true), (false, true)] {
                let label = format!("{dialect} ws={ws} encrypt={encrypt} password={with_password}");
                let mut pc = PeerConfig::new(ws, dialect);
                // The server answers whatever handshake the client asks for unless it expects plaintext.
                pc.mode = if encrypt || with_password { CryptoMode::Encrypt } else { CryptoMode::None };
                if with_password {
                    pc.password = Some(password().1.clone());
                }
                let peer = Peer::start(pc).await;
                let mut cfg = config(&peer, ws, dialect);
                cfg.encrypt = encrypt;
                cfg.frame = (64, 48);
                let creds = if with_password {
                    cfg.password = Some(password().0.clone());
                    creds_pw.clone()
                } else {
                    Default::default()
                };
                let client =
                    Client::connect_with(&cfg, &creds, None).await.unwrap_or_else(|e| panic!("{label}: {e}"));
                // AUTH mode (no encryption, a password) still encrypts on WebSocket, where the server
                // always selects the cipher (ACIP-SPEC.md 3.3).
                let encrypted = encrypt || (ws && with_password);
                assert_eq!(client.is_encrypted(), encrypted, "{label}");
                for seq in 0..3 {
                    client.send_frame(seq, 1_000 + seq).await.unwrap();
                }
                client.wait_ascii_frames(3, WAIT).await.unwrap_or_else(|e| panic!("{label}: {e}"));
                let s = peer.wait(&label, WAIT, |s| s.frames.len() == 3).await;
                assert_eq!(
                    (s.caps, s.stream_starts, s.encrypted_sessions),
                    (1, 1, u64::from(encrypted)),
                    "{label}"
                );
                let seqs: Vec<u64> = s.frames.iter().map(|f| f.seq).collect();
                assert_eq!(seqs, [0, 1, 2], "{label}");
                assert!(
                    s.frames.iter().all(|f| f.tag == 0xC0FFEE && f.send_time_us == 1_000 + f.seq),
                    "{label}"
                );
                assert!(s.pattern_errors.is_empty() && s.errors.is_empty(), "{label}: {s:?}");
                let report = client.close().await;
                assert_eq!(report.frames_sent(), 3, "{label}");
                assert_eq!(report.ascii_frames, 3, "{label}");
                assert_eq!(report.last_server_state, Some((1, 1)), "{label}");
                assert!(!report.has_validation_errors(), "{label}: {:?}", report.counters.errors);
                for stage in ["client_build", "client_write", "client_flush", "handshake", "ascii_interval"] {
                    assert!(report.stages.snapshot().contains_key(stage), "{label}: no {stage}");
                }
                assert_eq!(report.stages.snapshot().contains_key("client_encrypt"), encrypted, "{label}");
                peer.wait("the session to end", WAIT, |s| s.ended == 1).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_320x240_frame_in_4096_byte_fragments_arrives_intact() {
    let mut pc = PeerConfig::new(true, Dialect::Feb);
    pc.mode = CryptoMode::None;
    let peer = Peer::start(pc).await;
    let mut cfg = config(&peer, true, Dialect::Feb);
    cfg.encrypt = false;
    cfg.ws_fragment = Some(4096);
    let client = Client::connect(&cfg, None).await.unwrap();
    assert_eq!(client.ws_fragment(), Some(4096));
    for seq in 0..5 {
        client.send_frame(seq, 0).await.unwrap();
    }
    let s = peer.wait("5 frames", WAIT, |s| s.frames.len() == 5).await;
    // 22 + 24 + 320*240*3: the "230446" of the SIGABRT analysis (ACIP-SPEC.md 3.7, section 8).
    assert_eq!(s.frame_wire_sizes, [230_446; 5]);
    assert!(s.errors.is_empty(), "{s:?}");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_640x480_frame_arrives_intact_plain_and_encrypted() {
    for (ws, encrypt, wire) in
        [(false, false, 921_646), (true, false, 921_646), (false, true, 921_708), (true, true, 921_708)]
    {
        let mut pc = PeerConfig::new(ws, Dialect::Head);
        pc.mode = if encrypt { CryptoMode::Encrypt } else { CryptoMode::None };
        let peer = Peer::start(pc).await;
        let mut cfg = config(&peer, ws, Dialect::Head);
        cfg.encrypt = encrypt;
        cfg.frame = (640, 480);
        let client = Client::connect(&cfg, None).await.unwrap();
        for seq in 0..3 {
            client.send_frame(seq, 0).await.unwrap();
        }
        let s = peer.wait("3 VGA frames", WAIT, |s| s.frames.len() == 3).await;
        assert_eq!(s.frame_wire_sizes, [wire; 3], "ws={ws} encrypt={encrypt}");
        assert!(s.frames.iter().all(|f| (f.width, f.height) == (640, 480)));
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_interleave_messages_and_a_single_writer_does_not() {
    for concurrent in [false, true] {
        let mut pc = PeerConfig::new(true, Dialect::Feb);
        pc.mode = CryptoMode::None;
        let peer = Peer::start(pc).await;
        let mut cfg = config(&peer, true, Dialect::Feb);
        cfg.encrypt = false;
        cfg.ws_fragment = Some(4096);
        cfg.faults = ClientFaults { concurrent_writers: concurrent };
        let client = Client::connect(&cfg, None).await.unwrap();
        let mut sent = 0;
        for seq in 0..20 {
            if client.send_frame(seq, 0).await.is_err() {
                break;
            }
            sent += 1;
        }
        if concurrent {
            // tungstenite on the peer refuses a new data frame while a fragmented message is open.
            let s = peer.wait("the interleaving to be refused", WAIT, |s| !s.errors.is_empty()).await;
            assert!(s.errors.iter().any(|e| e.contains("ws:")), "{s:?}");
            assert!(s.frames.len() < 20, "{s:?}");
        } else {
            let s = peer.wait("20 frames", WAIT, |s| s.frames.len() == 20).await;
            assert_eq!(sent, 20);
            assert!(s.errors.is_empty(), "{s:?}");
        }
        client.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_stops_at_the_first_ascii_frame() {
    let peer = Peer::start(PeerConfig::new(false, Dialect::Feb)).await;
    let cfg = ClientConfig { snapshot: true, ..config(&peer, false, Dialect::Feb) };
    let report = run(cfg, None).await.unwrap();
    assert_eq!(report.snapshot.as_deref(), Some("frame 0\n"));
    assert!(report.ascii_frames >= 1);
    assert_eq!(report.sessions, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_runs_one_session_per_cycle() {
    let peer = Peer::start(PeerConfig::new(true, Dialect::Head)).await;
    let cfg = ClientConfig { reconnect: 4, stop: StopAfter::Frames(2), ..config(&peer, true, Dialect::Head) };
    let report = run(cfg, None).await.unwrap();
    assert_eq!((report.sessions, report.frames_sent()), (4, 8));
    let s = peer.wait("4 sessions to end", WAIT, |s| s.ended == 4).await;
    assert_eq!((s.connections, s.handshakes, s.frames.len()), (4, 4, 8));
    assert_eq!(report.counters.connections_closed, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_close_ends_the_run_with_closed() {
    for ws in [false, true] {
        let mut pc = PeerConfig::new(ws, Dialect::Feb);
        pc.close_after_frames = Some(2);
        let peer = Peer::start(pc).await;
        let err = run(config(&peer, ws, Dialect::Feb), None).await.unwrap_err();
        assert!(matches!(err, ClientError::Closed { .. }), "ws={ws}: {err}");
        assert_eq!(err.exit_code(), 8);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_ascii_checksum_and_a_short_server_state_are_counted_not_accepted() {
    let mut pc = PeerConfig::new(false, Dialect::Head);
    pc.corrupt_ascii = true;
    pc.short_server_state = true;
    let peer = Peer::start(pc).await;
    let client = Client::connect(&config(&peer, false, Dialect::Head), None).await.unwrap();
    client.send_frame(0, 0).await.unwrap();
    client.send_frame(1, 0).await.unwrap();
    peer.wait("2 frames", WAIT, |s| s.frames.len() == 2).await;
    // The ASCII frames come after the frames on the same connection; PONG-less, so close and look.
    let report = client.close().await;
    assert_eq!(report.ascii_frames, 0);
    assert_eq!(report.received(PacketType::ASCII_FRAME), 2, "{:?}", report.counters);
    assert_eq!(report.counters.errors.get("invalid_ascii_frame"), Some(&2), "{:?}", report.counters.errors);
    assert_eq!(report.counters.errors.get("invalid_server_state"), Some(&1), "{:?}", report.counters.errors);
    assert_eq!(report.last_server_state, None);
    assert!(report.has_validation_errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_audio_is_dropped_not_an_error_even_when_it_is_a_bare_opus_frame() {
    // The real FEB server sends every client 4001 packets holding one bare Opus frame; the native client
    // (audio off by default) drops them. Seen against the real server: 1989 errors in a 10 s soak.
    for ws in [false, true] {
        let mut pc = PeerConfig::new(ws, Dialect::Feb);
        pc.feb_audio = true;
        let peer = Peer::start(pc).await;
        let client = Client::connect(&config(&peer, ws, Dialect::Feb), None).await.unwrap();
        client.send_frame(0, 0).await.unwrap();
        // The audio went out before the ASCII frame that answers this IMAGE_FRAME, on the same connection.
        client.wait_ascii_frames(1, WAIT).await.unwrap();
        let report = client.close().await;
        assert_eq!(report.received(PacketType::AUDIO_OPUS_BATCH), 2, "ws={ws} {:?}", report.counters);
        assert_eq!(report.counters.drops.get("audio_not_a_batch"), Some(&1), "ws={ws} {:?}", report.counters);
        assert_eq!(report.counters.drops.get("audio_not_played"), Some(&1), "ws={ws} {:?}", report.counters);
        assert!(!report.has_validation_errors(), "ws={ws} {:?}", report.counters.errors);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tcp_server_is_recognised() {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"SERVER_FULL: Maximum client limit reached\n").await.unwrap();
        s.shutdown().await.unwrap();
        // Keep the socket until the client is done reading.
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut sink).await;
    });
    let err = Client::connect(&ClientConfig::new(Target::tcp(addr)), None).await.err().unwrap();
    match &err {
        ClientError::ServerFull(line) => assert_eq!(line, "SERVER_FULL: Maximum client limit reached"),
        other => panic!("{other}"),
    }
    assert_eq!(err.exit_code(), 6);
    server.abort();
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(u32, ClientEvent)>>);

impl ClientObserver for Recorder {
    fn on_event(&self, tag: u32, event: &ClientEvent) {
        self.0.lock().unwrap().push((tag, event.clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observer_sees_connect_frames_ascii_and_close() {
    let peer = Peer::start(PeerConfig::new(false, Dialect::Feb)).await;
    let rec = Arc::new(Recorder::default());
    let cfg = ClientConfig { stop: StopAfter::Frames(3), tag: 5, ..config(&peer, false, Dialect::Feb) };
    let client = Client::connect(&cfg, Some(rec.clone())).await.unwrap();
    for seq in 0..3 {
        client.send_frame(seq, 77).await.unwrap();
    }
    client.wait_ascii_frames(3, WAIT).await.unwrap();
    client.close().await;
    let events = rec.0.lock().unwrap();
    assert!(events.iter().all(|(tag, _)| *tag == 5));
    // SERVER_STATE may come first: the server answers CLIENT_CAPABILITIES before `connect` returns.
    let connected =
        events.iter().position(|(_, e)| matches!(e, ClientEvent::Connected { encrypted: true, .. }));
    let first_frame = events.iter().position(|(_, e)| matches!(e, ClientEvent::FrameSent { .. }));
    assert!(connected.unwrap() < first_frame.unwrap());
    let sent: Vec<u64> = events
        .iter()
        .filter_map(|(_, e)| match e {
            ClientEvent::FrameSent { seq, intended_us: 77, wire_bytes: 230_508, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [0, 1, 2]);
    assert_eq!(events.iter().filter(|(_, e)| matches!(e, ClientEvent::AsciiFrame { .. })).count(), 3);
    assert!(matches!(events.last().unwrap().1, ClientEvent::Closed(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_stops_gracefully_and_keeps_the_report() {
    let peer = Peer::start(PeerConfig::new(true, Dialect::Feb)).await;
    let stop = async {
        peer.wait("3 frames", WAIT, |s| s.frames.len() >= 3).await;
    };
    let (report, outcome) = reference_client::run_until(config(&peer, true, Dialect::Feb), None, stop).await;
    outcome.unwrap();
    assert!(report.frames_sent() >= 3);
    assert_eq!(report.sessions, 1);
    assert!(report.close.as_ref().is_some_and(|c| c.by_client), "{:?} {:?}", report.close, peer.stats());
    peer.wait("the session to end", WAIT, |s| s.ended == 1).await;

    // A failed run still returns what it measured.
    let mut pc = PeerConfig::new(false, Dialect::Feb);
    pc.close_after_frames = Some(2);
    let peer = Peer::start(pc).await;
    let (report, outcome) =
        reference_client::run_until(config(&peer, false, Dialect::Feb), None, std::future::pending()).await;
    assert!(matches!(outcome, Err(ClientError::Closed { .. })), "{outcome:?}");
    // The peer closes after reading 2 frames; a third may already be on its way.
    assert!(report.frames_sent() >= 2);
    assert_eq!(report.counters.errors.get("closed"), Some(&1));
}
