//! Integration tests of valor-fair (one binary; modules by area).

mod bootstrap;
mod counts;
mod drift;
mod live;
mod mitigation;
mod parity;
mod properties;
mod report;
mod streaming;
mod support;
