//! `watchtrain-relay`: parses flags, sets up logs, binds, prints the URLs, runs.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use watchtrain_relay::{run, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never in journald or a file (NO_COLOR too).
        .with_ansi(
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    let listener = match TcpListener::bind(config.listen_addr()).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "watchtrain-relay: cannot listen on {}: {e}",
                config.listen_addr()
            );
            return ExitCode::from(2);
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("watchtrain-relay: {e}");
            return ExitCode::from(2);
        }
    };
    print_urls(addr, config.tls_cert.is_some());
    match run(listener, config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut message = format!("watchtrain-relay: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                message.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints where phones and browsers on the LAN can reach the relay.
fn print_urls(addr: SocketAddr, tls: bool) {
    let (http, ws) = if tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    println!("watchtrain-relay listening on {addr}");
    let ips: Vec<IpAddr> = if addr.ip().is_unspecified() {
        if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.ip())
            .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
            .collect()
    } else {
        vec![addr.ip()]
    };
    if ips.is_empty() {
        println!(
            "  (no LAN address found; on this machine: {http}://127.0.0.1:{}/)",
            addr.port()
        );
    }
    for ip in ips {
        let host = SocketAddr::new(ip, addr.port());
        println!("  dashboard  {http}://{host}/");
        println!("  watch      {ws}://{host}/v1/watch");
        println!("  produce    {ws}://{host}/v1/produce");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
