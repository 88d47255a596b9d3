//! Apache Kafka for the tests: a real single-node broker (KRaft), started
//! by `scripts/kafka.sh run` from the jars `scripts/setup.sh` installs.
//!
//! One broker serves the whole test binary ([`Broker::shared`]); each test
//! gives itself its own topics and group ids. A test that kills the broker
//! starts its own ([`Broker::start`]). Either way the broker dies with the
//! test binary: it ends when the standard input we hold for it closes.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;

/// How long a broker may take to start (a JVM on a loaded 2-core machine).
const START_PATIENCE: Duration = Duration::from_secs(120);

/// The SASL/PLAIN user the shared broker knows, for the SASL tests.
pub(crate) const SASL_USER: &str = "livemap";
pub(crate) const SASL_PASSWORD: &str = "livemap-secret";

pub(crate) fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One running (or killed) broker.
pub(crate) struct Broker {
    /// `scripts/kafka.sh run`, which owns the JVM.
    script: Option<Child>,
    /// Held open: the broker ends when this closes.
    lifeline: Option<ChildStdin>,
    dir: PathBuf,
    controller_port: u16,
    settings: Vec<String>,
    /// The plaintext listener, for everything that is not about security.
    pub(crate) port: u16,
    /// A SASL_PLAINTEXT listener (PLAIN, [`SASL_USER`]), on the shared broker.
    pub(crate) sasl_port: Option<u16>,
    /// A plaintext listener that advertises [`Broker::proxy_port`], where
    /// a test puts a proxy it can cut, on the shared broker.
    pub(crate) proxied_port: Option<u16>,
    pub(crate) proxy_port: Option<u16>,
}

/// A record as read back: its offset and value.
pub(crate) type Record = (i64, Option<Vec<u8>>);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh")
}

impl Broker {
    /// The test binary's broker, started on first use. Besides its
    /// plaintext listener it has a SASL one and one behind a proxy port.
    pub(crate) fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(|| {
            let (port, sasl, proxied, proxy) = (free_port(), free_port(), free_port(), free_port());
            let jaas = format!(
                "org.apache.kafka.common.security.plain.PlainLoginModule required \
                 username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
                 user_{SASL_USER}=\"{SASL_PASSWORD}\";"
            );
            let settings = vec![
                format!(
                    "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{{controller}},\
                     SASL_PLAINTEXT://127.0.0.1:{sasl},PROXIED://127.0.0.1:{proxied}"
                ),
                format!(
                    "advertised.listeners=PLAINTEXT://127.0.0.1:{port},\
                     SASL_PLAINTEXT://127.0.0.1:{sasl},PROXIED://127.0.0.1:{proxy}"
                ),
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,\
                 SASL_PLAINTEXT:SASL_PLAINTEXT,PROXIED:PLAINTEXT"
                    .to_owned(),
                "sasl.enabled.mechanisms=PLAIN".to_owned(),
                // The log cleaner looks for work every half second (Kafka:
                // 15 s), so a test sees a compacted topic soon.
                "log.cleaner.backoff.ms=500".to_owned(),
                format!("listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}"),
            ];
            let mut b = Broker::new("shared", port, settings);
            b.sasl_port = Some(sasl);
            b.proxied_port = Some(proxied);
            b.proxy_port = Some(proxy);
            b.launch();
            b
        })
    }

    /// A broker of the caller's own, for a test that kills it.
    pub(crate) fn start(name: &str) -> Broker {
        let mut b = Broker::new(name, free_port(), Vec::new());
        b.launch();
        b
    }

    fn new(name: &str, port: u16, settings: Vec<String>) -> Broker {
        let dir = std::env::temp_dir().join(format!(
            "livemap-kafka-{name}-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Broker {
            script: None,
            lifeline: None,
            dir,
            controller_port: free_port(),
            settings,
            port,
            sasl_port: None,
            proxied_port: None,
            proxy_port: None,
        }
    }

    pub(crate) fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    /// Starts the JVM (formatting the data directory on first use) and
    /// waits until it says it has started.
    fn launch(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("broker directory");
        let log = self.log_path();
        // Each start appends, so a restarted broker's log keeps the first run.
        let marker = std::fs::metadata(&log).map_or(0, |m| m.len());
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("broker log");
        let err = out.try_clone().expect("broker log");
        eprintln!(
            "Kafka broker on 127.0.0.1:{} logs to {}",
            self.port,
            log.display()
        );
        let settings: Vec<String> = self
            .settings
            .iter()
            .map(|s| s.replace("{controller}", &self.controller_port.to_string()))
            .collect();
        let mut child = Command::new("bash")
            .arg(script())
            .arg("run")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .arg(self.controller_port.to_string())
            .args(&settings)
            .env("LIVEMAP_KAFKA_TIE_STDIN", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("scripts/kafka.sh runs");
        self.lifeline = child.stdin.take();
        self.script = Some(child);
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            let text = std::fs::read(&log).unwrap_or_default();
            let new = String::from_utf8_lossy(text.get(marker as usize..).unwrap_or_default());
            if new.contains("Kafka Server started") {
                return;
            }
            let exited = self
                .script
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none(),
                "the Kafka broker exited at start ({exited:?}); is it installed \
                 (scripts/setup.sh)? Its log:\n{new}"
            );
            assert!(
                Instant::now() < deadline,
                "the Kafka broker did not start in time; its log:\n{new}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL to the JVM: no shutdown code runs, as in a crash.
    pub(crate) fn kill_9(&mut self) {
        let pid = std::fs::read_to_string(self.dir.join("kafka.pid")).expect("broker pid");
        let status = Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -9 {pid}");
        if let Some(mut child) = self.script.take() {
            let _ = child.wait();
        }
        self.lifeline = None;
    }

    /// Starts the broker again on its ports and data after [`Broker::kill_9`].
    pub(crate) fn restart(&mut self) {
        assert!(self.script.is_none(), "restart follows kill_9");
        self.launch();
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        c
    }

    /// Creates `name` with `partitions` partitions and `settings`, as the
    /// product creates its own topics.
    pub(crate) async fn create_topic_with(
        &self,
        name: &str,
        partitions: i32,
        settings: &[(&str, &str)],
    ) {
        if let Err(reason) =
            livemap_server::kafka::topics::ensure(self.client_config(), name, partitions, settings)
                .await
        {
            panic!("creating topic {name}: {reason}");
        }
    }

    /// What partition 0 of `topic` holds now, from its beginning to its
    /// high watermark: each record's offset and value, and the high
    /// watermark (past the last offset; more than the records once
    /// compaction removed some).
    pub(crate) fn records(&self, topic: &str) -> (Vec<Record>, i64) {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Message as _;
        use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", "records-of-a-topic")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let (_, high) = consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(10))
            .expect("watermarks");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)
            .expect("partition");
        consumer.assign(&tpl).expect("assigned");
        let (mut records, mut next) = (Vec::new(), 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while next < high && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                next = m.offset() + 1;
                records.push((m.offset(), m.payload().map(<[u8]>::to_vec)));
            }
        }
        assert!(next >= high, "read {topic} to its end");
        (records, high)
    }

    pub(crate) async fn create_topic(&self, name: &str, partitions: i32) {
        self.create_topic_with(name, partitions, &[]).await
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Closing its standard input ends the broker (see scripts/kafka.sh).
        self.lifeline = None;
        if let Some(mut child) = self.script.take() {
            let _ = child.wait();
        }
        // A failing test keeps the broker's log (its path was printed).
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
