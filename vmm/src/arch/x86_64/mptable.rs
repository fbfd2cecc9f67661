//! The MP table (to be written).
