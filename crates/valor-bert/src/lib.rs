//! valor-bert (being written).
