//! Rebuilds the relay when a file of the embedded dashboard (`static/`) changes:
//! `include_dir!` alone is not tracked by cargo on stable Rust, so a rebuilt
//! wasm (scripts/build-watch-wasm) would otherwise be served stale.

fn main() {
    println!("cargo:rerun-if-changed=static");
}
