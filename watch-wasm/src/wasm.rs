//! The #[wasm_bindgen] shim (feature `wasm`).
