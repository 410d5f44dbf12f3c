//! The checked-in `protocol/vectors/limits.json` is what the crates say today.

#[test]
fn limits_json_is_generated_from_the_crates() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../protocol/vectors/limits.json"
    );
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == watchtrain_watch::limits::json(),
        "{path} is stale: run `cargo run -p watchtrain-watch --example limits` and commit it"
    );
}

#[test]
fn the_ops_bound_and_the_cbor_head_make_the_watch_message_bound() {
    use watchtrain_watch::limits::*;
    assert_eq!(MAX_OPS_LEN + CBOR_BYTES_HEAD, MAX_WATCH_MESSAGE);
    assert_eq!(watchtrain_watch::vector::MAX_MESSAGE_LEN, MAX_OPS_LEN);
}
