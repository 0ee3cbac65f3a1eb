//! Topic tree benchmarks (filled in by the broker work).
fn main() {}
