//! Protocol tests: validation errors, chain rules, thread status, golden vectors, properties.

#![allow(unreachable_pub, clippy::unwrap_used)]

mod fixture;
mod golden;
mod properties;
mod rules;
