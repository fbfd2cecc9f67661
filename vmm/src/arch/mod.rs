//! Architecture-specific boot support. husk runs on x86-64 only.

pub mod x86_64;
