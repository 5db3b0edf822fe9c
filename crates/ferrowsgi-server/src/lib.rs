//! The server layer of ferrowsgi: listeners, connections, timeouts and the
//! scheduling of requests onto application threads. It knows HTTP/1.1 through
//! `ferrowsgi-proto` and knows nothing of Python: it calls the application
//! through the [`Handler`] trait, which the PyO3 binding implements (and a
//! plain Rust handler does in tests).
//!
//! Request flow: socket bytes → [`conn`] (buffers, head parsing, body
//! buffering) → [`server`] (event loop, dispatch to a thread) →
//! [`Handler::handle`] with an [`Exchange`] (body reads, response framing and
//! writes) → socket.
#![deny(missing_docs, missing_debug_implementations)]

pub mod ajp;
pub mod body_buf;
pub mod clock;
pub mod codec;
pub mod config;
pub mod conn;
pub mod deadline;
pub mod exchange;
pub mod fastcgi;
pub mod handler;
pub mod health;
mod health_path;
mod hold;
pub mod io;
pub mod listen;
pub mod log;
pub mod metrics;
pub mod metrics_export;
pub mod oneshot;
pub mod peer;
mod pool;
pub mod process;
pub mod reload;
pub mod server;
pub mod settings;
mod spool;
pub mod state;
pub mod stop;
mod sync;
mod sys;
mod syscall;
pub mod wait;

pub use config::{Cli, Config};
pub use exchange::Exchange;
pub use handler::{Handler, Waiter};
pub use listen::{Bind, BindAddr, Listener, Scheme};
pub use peer::PeerInfo;
pub use server::Server;
pub use stop::StopHandle;
