//! End-to-end tests across the parts live in `tests/tests/`; this crate has no code of its own.
