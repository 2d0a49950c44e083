//! End-to-end tests and the load tool live in tests/ and benches/.
