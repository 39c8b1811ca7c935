//! Enforcement: the bridge between the proxy and the analysis core. It turns a decision into what
//! goes on the wire (the `RAISE` that replaces a rejected statement, a rewritten text) and asks the
//! server for the live facts the rules need.
pub mod engine;
pub mod estimate;
pub mod identity;
pub mod lookup;
pub mod raise;
pub mod routines;
