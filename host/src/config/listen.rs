//! Ports, connections, the admin token and the SIGTERM sequence.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::duration::parse_duration;

/// Traffic port of the seed service.
pub const DEFAULT_PORT: u16 = 8080;
/// Admin port: `/metrics` and `/admin/*`, kept off the traffic port so it is never exposed by accident.
pub const DEFAULT_ADMIN_PORT: u16 = 9090;
/// Open traffic connections: each costs ~18 KB and a file descriptor; containers often allow 1024.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 768;
/// How long requests in flight may take to finish after SIGTERM.
pub const DEFAULT_DRAIN_TIMEOUT: &str = "20s";
/// How long to keep accepting (and answering `/ready` 503) after SIGTERM, so load balancers notice.
pub const DEFAULT_SHUTDOWN_DELAY: &str = "0s";

/// Listeners and shutdown.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Listeners")]
pub struct ListenOptions {
    /// Traffic port (the component's routes, /health, /ready, /docs).
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT, value_parser = parse_port)]
    pub port: u16,
    /// Admin port: /metrics, GET /admin/component, the admin writes (PUT /admin/component,
    /// POST /admin/promote, POST /admin/rollback) and their reference (/openapi.json, /docs). Keep it off any
    /// Service that faces clients.
    #[arg(long, env = "ADMIN_PORT", default_value_t = DEFAULT_ADMIN_PORT, value_parser = parse_port)]
    pub admin_port: u16,
    /// Address both ports bind to: loopback by default, so a workstation never shows its admin port
    /// to the network (the container image sets 0.0.0.0).
    #[arg(long, env = "BIND", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Bearer token for the admin writes (PUT /admin/component, POST /admin/promote, POST
    /// /admin/rollback); empty means none. Never logged.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File holding the admin token (a mounted Secret) for the same writes; re-read every second.
    #[arg(long, env = "ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Open connections on the traffic port; past it new connections get a 503 and are closed.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// After SIGTERM: how long requests in flight may take to finish.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = DEFAULT_DRAIN_TIMEOUT, value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// After SIGTERM: how long to keep accepting with /ready answering 503 before draining.
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = DEFAULT_SHUTDOWN_DELAY, value_parser = parse_duration)]
    pub shutdown_delay: Duration,
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.trim().parse::<u16>().map_err(|_| format!("{text:?} is not a port number from 0 to 65535"))
}

impl ListenOptions {
    /// Traffic listener address.
    pub fn traffic_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }

    /// Admin listener address.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.admin_port)
    }

    /// The admin token given inline: an empty ADMIN_TOKEN is no token (what a missing Secret key looks
    /// like), so it may stand beside ADMIN_TOKEN_FILE.
    pub fn inline_admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref().map(str::trim).filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn a_port_that_is_not_a_number_says_what_is_accepted() {
        let error = parse(&["--port", "abc"]).expect_err("not a port");
        assert!(error.to_string().contains("is not a port number from 0 to 65535"), "{error}");
    }

    #[test]
    fn an_empty_admin_token_may_stand_beside_a_token_file() {
        let config = parse(&["--admin-token", "", "--admin-token-file", "/tmp/token"]).expect("empty token is no token");
        assert_eq!(config.listen.inline_admin_token(), None);
    }
}
