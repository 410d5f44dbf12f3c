//! watchtrain-companion: placeholder until its issue lands.
