//! Listeners (ACIP-SPEC.md 6.1, 8 "port-bind flakiness"): socket2 sockets with SO_REUSEADDR on (off under
//! `--fault no-reuseaddr`), IPV6_V6ONLY always set explicitly for IPv6, bind retries with backoff, and
//! `listen()` as a separate step so `--fault early-ready` can announce READY between bind and listen.

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use crate::error::{BindCause, ServerError};

/// Listen backlog.
pub const BACKLOG: i32 = 1024;
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A bound socket, not yet listening.
pub(crate) struct Bound {
    socket: Socket,
    pub local: SocketAddr,
}

impl Bound {
    /// Starts listening and hands the socket to tokio.
    pub(crate) fn listen(self) -> Result<TcpListener, ServerError> {
        self.socket.listen(BACKLOG)?;
        self.socket.set_nonblocking(true)?;
        Ok(TcpListener::from_std(self.socket.into())?)
    }
}

/// Binds `addr` with the configured options, retrying `retries` times with backoff.
pub(crate) async fn bind(
    addr: SocketAddr,
    reuseaddr: bool,
    v6only: bool,
    retries: u32,
) -> Result<Bound, ServerError> {
    let mut delay = FIRST_BACKOFF;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match bind_once(addr, reuseaddr, v6only) {
            Ok(b) => return Ok(b),
            Err(source) if attempt > retries => {
                let cause = BindCause::classify(&addr, &source, v6only);
                return Err(ServerError::Bind { addr, source, cause, reuseaddr, attempts: attempt });
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn bind_once(addr: SocketAddr, reuseaddr: bool, v6only: bool) -> std::io::Result<Bound> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(reuseaddr)?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6only)?;
    }
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    let local = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("bound socket has no IP address"))?;
    Ok(Bound { socket, local })
}

/// TCP_NODELAY on an accepted socket (every socket, ACIP-SPEC.md 6.2 "Socket options").
pub(crate) fn tune_accepted(stream: &tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_zero_reports_the_real_port_and_a_taken_port_fails_with_in_use() {
        let a = bind("127.0.0.1:0".parse().unwrap(), true, true, 0).await.unwrap();
        assert_ne!(a.local.port(), 0);
        let listener = a.listen().unwrap();
        let taken = listener.local_addr().unwrap();
        let err = bind(taken, true, true, 1).await.err().unwrap();
        match &err {
            ServerError::Bind { cause, attempts, .. } => {
                assert_eq!((*cause, *attempts), (BindCause::InUse, 2));
            }
            other => panic!("{other}"),
        }
        assert_eq!(err.exit_code(), 41);
    }
}
