//! CPUID normalization (to be written).
