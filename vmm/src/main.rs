//! `husk-vmm`: boot a kernel by hand (to be written).
fn main() {}
