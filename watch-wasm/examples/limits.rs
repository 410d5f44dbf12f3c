//! Writes `protocol/vectors/limits.json`, the one copy of the shared limits
//! that the Fitbit build, the watch app, Python and the tests read.
//! Run: `cargo run -p watchtrain-watch --example limits`.

fn main() -> std::io::Result<()> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../protocol/vectors/limits.json"
    );
    std::fs::write(path, watchtrain_watch::limits::json())?;
    println!("wrote {path}");
    Ok(())
}
