//! valor-train (being written).
