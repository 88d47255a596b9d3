//! `livemap`: parse flags, set up logging, bind, and hand over to
//! [`livemap_server::run`].

use anyhow::Context;
use clap::Parser;
use livemap_server::{Args, Config};
use tracing_subscriber::EnvFilter;

/// Allocations of at least this many bytes get pages of their own,
/// returned to the system when freed.
const OWN_PAGES_FROM: i32 = 1 << 20;

/// Keeps large allocations out of glibc's arenas. The engine's states are
/// megabytes each (sketches, the per-minute history), made and dropped on
/// several threads: an edge decodes a whole state per aggregator, a
/// snapshot copies out of the engine. Past its first such free glibc
/// raises its mmap threshold and serves them from per-thread arenas, which
/// keep what was freed: a process running for days then holds twice what
/// it uses. A fixed threshold keeps the resident size to what is live.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn large_allocations_get_their_own_pages() {
    // SAFETY: mallopt only changes a tuning parameter of the allocator;
    // it is called first thing, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, OWN_PAGES_FROM);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn large_allocations_get_their_own_pages() {}

fn main() -> anyhow::Result<()> {
    large_allocations_get_their_own_pages();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    // Listening for SIGTERM from the first moment: one that comes while
    // the process is still starting (restoring, claiming its id) stops it
    // cleanly as soon as it serves, instead of killing it.
    let shutdown = shutdown_signal();
    // Logs go to stderr; stdout carries only the line that says where the
    // server listens, for scripts.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&args.log).context("invalid --log filter")?)
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config::from_args(&args)?;
    fit_to_open_files(&mut config);
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
    let grace = std::time::Duration::from_secs(u64::from(args.shutdown_grace_secs));
    livemap_server::run(listeners, config, async move {
        shutdown.await;
        exit_after(grace);
    })
    .await?;
    Ok(())
}

/// Every client socket is a file descriptor, held from accept: takes all
/// the open files the hard limit allows (root with `CAP_SYS_RESOURCE` can
/// raise that), and keeps the socket cap below them with some to spare,
/// so that a crowd past it gets a clean 503 rather than failed accepts,
/// and the admin listener, the Kafka client and the state directory
/// always have descriptors.
fn fit_to_open_files(config: &mut Config) {
    let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => files,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            match rlimit::Resource::NOFILE.get() {
                Ok((soft, _)) => soft,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the open-file limit: the connection cap is not checked against it");
                    return;
                }
            }
        }
    };
    let wanted = config.limits.max_connections;
    let fits = livemap_server::http::fanout::sockets_within(wanted, open_files);
    if fits < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_files,
            lowered_to = fits,
            kept_back = livemap_server::http::fanout::FILES_KEPT_BACK,
            "--max-connections {wanted} does not fit the open-file limit of {open_files}: \
             client sockets are capped at {fits} (raise the limit with ulimit -n / LimitNOFILE)"
        );
        config.limits.max_connections = fits;
    }
}

/// Ends the process `grace` after a shutdown began, if it has not ended by
/// itself: a Kafka client can wait far longer for a broker that is away
/// (to leave the group, to commit). Everything the product counts on is
/// durable before it is acknowledged, so this exit loses no more than a
/// crash would: what was read since the last checkpoint is read again.
fn exit_after(grace: std::time::Duration) {
    let spawned = std::thread::Builder::new()
        .name("livemap-exit".into())
        .spawn(move || {
            std::thread::sleep(grace);
            tracing::warn!(
                ?grace,
                "shutdown grace passed: exiting now; what is not yet durable is read again on restart"
            );
            std::process::exit(0);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no shutdown deadline: cannot start its thread");
    }
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is
/// called, not when it is first awaited.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match term {
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
}
