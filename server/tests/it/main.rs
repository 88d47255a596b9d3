//! Integration tests: the real server on a port-0 listener, read by real
//! HTTP, WebSocket and SSE clients. One test binary; helpers in `util`.

mod broker;
mod util;

mod failures;
mod fanout;
mod golden;
mod hostile;
mod kafka;
mod limits;
mod metrics;
mod privacy;
mod scaleout;
mod transports;
mod upgrade;
