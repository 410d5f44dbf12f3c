//! watchtrain-watch: placeholder until its issue lands.
