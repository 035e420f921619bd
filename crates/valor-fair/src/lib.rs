//! valor-fair (being written).
