//! valor-values (being written).
