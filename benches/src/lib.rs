//! criterion benchmarks for meshward.
