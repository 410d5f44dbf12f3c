//! watchtrain-tests: placeholder until its issue lands.
