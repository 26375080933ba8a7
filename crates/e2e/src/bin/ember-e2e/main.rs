//! `ember-e2e`: the data-plane benchmark and the local demo, in network namespaces (root).
fn main() {}
