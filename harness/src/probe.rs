//! "Is anything there?": one TCP connection to a target before a subcommand runs against it. When nothing
//! accepts it, the run stops with one error naming the address and the OS error ([`crate::Error::Unreachable`],
//! exit 6) instead of reporting every case as failed. A target that accepts and then closes is reachable:
//! what it does next is what the subcommand tests.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long the one probe connection may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects once to `addr` (the address `url` resolved to) and closes again.
pub fn probe(url: &str, addr: SocketAddr) -> crate::Result<()> {
    match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
        Ok(_) => Ok(()),
        Err(e) => Err(crate::Error::Unreachable { target: format!("{url} ({addr})"), reason: describe(&e) }),
    }
}

/// `connection refused`, `timed out after 3 s`, `no route to host`, ... with the OS's own words.
fn describe(e: &std::io::Error) -> String {
    let what = match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused (nothing listens on that port)".to_string(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => {
            format!(
                "no answer within {} s (a firewall dropping packets, or the host is down)",
                PROBE_TIMEOUT.as_secs()
            )
        }
        ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "no route to the host".to_string(),
        ErrorKind::AddrNotAvailable => "the address is not available here".to_string(),
        _ => "the connection failed".to_string(),
    };
    format!("{what}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_unreachable_and_an_open_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        probe("tcp://open", open).unwrap();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = probe("ws://closed", closed).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(&closed.to_string()) && text.contains("connection refused"), "{text}");
        assert_eq!(e.exit_code(), std::process::ExitCode::from(crate::error::EXIT_UNREACHABLE));
    }
}
