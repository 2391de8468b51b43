//! The accept loop: one task per connection until SIGINT or SIGTERM arrives.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::conn;
use crate::state::SimState;

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A future that resolves with the signal's name on SIGINT or SIGTERM. Handlers are installed now, so a signal that
/// arrives before the future is first polled is not lost.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = &'static str>> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}

/// Accepts connections until `shutdown` resolves. Connections still open (hanging ones included) are dropped when
/// the runtime stops.
pub async fn run(listener: TcpListener, state: Arc<SimState>, shutdown: impl Future<Output = &'static str>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            signal = &mut shutdown => {
                info!(signal, "shutting down");
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    tokio::spawn(conn::serve(stream, Arc::clone(&state)));
                }
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}
