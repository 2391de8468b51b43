//! Whatever another build (or a broken store) left under a series key, decoding never panics, and what
//! decodes re-encodes to the same series.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stock_component::core::cache;

fuzz_target!(|data: &[u8]| {
    if let Some(series) = cache::decode(data) {
        assert_eq!(cache::decode(&cache::encode(&series)), Some(series));
    }
});
