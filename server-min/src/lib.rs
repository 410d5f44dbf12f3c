//! watchtrain-relay: placeholder until its issue lands.
