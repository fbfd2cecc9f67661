//! The sandbox as the CLI and the shim see it: they start the sandbox process and
//! reach the agent in its VM; they never hold a VM themselves.

pub mod control;
pub mod lifecycle;
pub mod pod;
