//! Whatever the upstream sends, the parser answers with a series or a refusal, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stock_component::core::alphavantage::parse_answer;

fuzz_target!(|data: &[u8]| {
    let status = data.first().map_or(200, |b| 100 + u16::from(*b) * 2);
    let _ = parse_answer(status, data.get(1..).unwrap_or_default());
});
