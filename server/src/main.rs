//! `livemap`: parse flags, set up logging, bind, and hand over to
//! [`livemap_server::run`].

use anyhow::Context;
use clap::Parser;
use livemap_server::{Args, Config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logs go to stderr; stdout carries only the line that says where the
    // server listens, for scripts.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&args.log).context("invalid --log filter")?)
        .with_writer(std::io::stderr)
        .init();
    let config = Config::from_args(&args)?;
    // Every client is a file descriptor: take all the hard limit allows
    // (root can raise that; see docs/BENCHMARKS.md for 100k clients).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if (n as usize) < config.limits.max_connections => tracing::warn!(
            open_files = n,
            max_connections = config.limits.max_connections,
            "the open-file limit is below --max-connections; raise it (ulimit -Hn) to serve that many"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let admin = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", args.admin_listen))?;
    let addr = listener.local_addr()?;
    let admin_addr = admin.local_addr()?;
    // Scripts and tests read this line to find the port (`--listen
    // 127.0.0.1:0` picks a free one).
    println!("livemap listening on http://{addr}/ (admin on http://{admin_addr}/)");
    match &config.kafka {
        Some(k) => {
            tracing::info!(%addr, brokers = %k.brokers, topic = %k.topic, "serving the Kafka source")
        }
        None => tracing::info!(%addr, demo_rate = config.demo_rate, "serving the demo source"),
    }
    let listeners = livemap_server::Listeners {
        public: listener,
        admin: Some(admin),
    };
    livemap_server::run(listeners, config, shutdown_signal()).await?;
    Ok(())
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
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
