//! virtio-rng (to be written).
