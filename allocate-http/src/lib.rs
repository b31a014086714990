//! The allocate server and the reference agent.

pub mod agent;
