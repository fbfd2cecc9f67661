//! The virtio-mmio transport (to be written).
