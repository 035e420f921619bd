//! valor-data (being written).
