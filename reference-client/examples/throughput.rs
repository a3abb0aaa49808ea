//! What ONE client sustains on loopback (issue 4, "Done when"): 640x480 frames (921,646 bytes plain,
//! 921,708 encrypted) sent back to back by one `Client` to the in-process reference server over TCP and
//! WebSocket, plaintext and encrypted, beside raw TCP on loopback moving 921,646-byte records in the same
//! run. Each figure counts frames the socket accepted (written and flushed); the server's count of frames
//! it received intact is printed beside it, and so is the ratio to raw TCP in the same run (issue 15: at
//! least 0.7x for plaintext), with the user-space passes over each frame's bytes on that path (see
//! `reports/frame-path.md` for how they are counted).
//!
//! `cargo run --release -p reference-client --example throughput -- [SECONDS] [feb|head]`

use std::time::Duration;

use acip::Dialect;
use reference_client::bench::{client_max_rate, discard_sink, raw_tcp};
use reference_client::{ClientConfig, Target};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let dialect: Dialect = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(Dialect::Head);
    let d = Duration::from_secs_f64(secs);
    println!("one client, 640x480 RGB frames, {secs} s per row, dialect {dialect}, {} cores", cores());
    let raw = raw_tcp(d, 921_646).await.expect("raw TCP");
    println!("{raw}");
    let raw_rate = raw.per_second();
    for (ws, encrypt) in [(false, false), (false, true), (true, false), (true, true)] {
        let server = reference_server::start(reference_server::ServerConfig {
            dialect,
            ..reference_server::ServerConfig::loopback()
        })
        .await
        .expect("reference server");
        let target =
            if ws { Target::ws(server.ws_addr().unwrap()) } else { Target::tcp(server.tcp_addr().unwrap()) };
        let cfg = ClientConfig { dialect, encrypt, frame: (640, 480), ..ClientConfig::new(target) };
        let label = format!(
            "{} {}",
            if ws { "WebSocket" } else { "TCP" },
            if encrypt { "encrypted" } else { "plaintext" }
        );
        let t = client_max_rate(&cfg, &label, d).await.expect("client run");
        server.wait_until(Duration::from_secs(10), |s| s.slots_in_use() == 0).await;
        let c = server.stats().counters;
        let got = c.frames_received;
        let (client_passes, server_passes) = passes(ws, encrypt);
        println!(
            "{t}\n    server received {got} intact ({:.1}/s), lost {}, corrupt {}, drops {:?}, errors {:?}\n    \
             {:.2}x raw TCP; passes over the frame: client {client_passes}, server {server_passes} \
             (+ the kernel's copy on each side)",
            got as f64 / t.seconds,
            c.frames_lost,
            c.frames_corrupt,
            c.drops,
            c.errors,
            t.per_second() / raw_rate,
        );
        server.shutdown().await;
    }
    // The client's own ceiling: the same rows against a peer that only completes the handshake and
    // discards the rest.
    for (ws, encrypt) in [(false, false), (false, true), (true, false), (true, true)] {
        let addr = discard_sink(ws, dialect).await.expect("discard sink");
        let target = if ws { Target::ws(addr) } else { Target::tcp(addr) };
        let cfg = ClientConfig { dialect, encrypt, frame: (640, 480), ..ClientConfig::new(target) };
        let label = format!(
            "{} {} -> discard",
            if ws { "WebSocket" } else { "TCP" },
            if encrypt { "encrypted" } else { "plaintext" }
        );
        let t = client_max_rate(&cfg, &label, d).await.expect("client run");
        println!(
            "{t}\n    {:.2}x raw TCP; client passes {}",
            t.per_second() / raw_rate,
            passes(ws, encrypt).0
        );
    }
}

/// Full user-space passes over a frame's bytes per path, client and server, as the code stands (counted
/// in `reports/frame-path.md`: writes, copies, CRCs, mask, cipher and MAC passes; the kernel's socket
/// copies are not included).
fn passes(ws: bool, encrypt: bool) -> (&'static str, &'static str) {
    match (ws, encrypt) {
        // render
        (false, false) => ("1 (render)", "1 (packet CRC)"),
        // render, XSalsa20, Poly1305, outer CRC
        (false, true) => (
            "4 (render, XSalsa20, Poly1305, outer CRC)",
            "5 (outer CRC, zero-fill, Poly1305, XSalsa20, inner CRC)",
        ),
        // render, mask
        (true, false) => ("2 (render, mask)", "2 (unmask, packet CRC)"),
        (true, true) => (
            "5 (render, XSalsa20, Poly1305, outer CRC, mask)",
            "6 (unmask, outer CRC, zero-fill, Poly1305, XSalsa20, inner CRC)",
        ),
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
