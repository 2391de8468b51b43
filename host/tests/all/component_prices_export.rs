//! The typed `stock:service/prices` export, called through the host's own linker and shared store:
//! same logic and same cache as the HTTP routes.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use stock_host::config::{Cli, Command};
use stock_host::runtime::egress::EgressPolicy;
use stock_host::runtime::engine::{build_engine, build_linker};
use stock_host::runtime::store::RequestState;
use stock_host::runtime::variables::ComponentConfig;
use stock_host::state::Buckets;
use stock_host::telemetry::metrics::Metrics;
use wasmtime::Store;
use wasmtime::component::{Component, Val};

use crate::common::*;

fn call(symbol: Option<&str>, days: Option<u32>, sim: &Sim, kv: &Buckets) -> Val {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let Command::Serve(config) = Cli::parse_from(["stock-host", "serve", "--alphavantage-url", &sim.url()]).command else {
            unreachable!("serve was asked for")
        };
        let engine = build_engine(4, 64 << 20).expect("engine");
        let linker = build_linker(&engine).expect("linker");
        let component = Component::from_file(&engine, component_path()).expect("component");
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let egress = EgressPolicy {
            allowed_authority: config.service.upstream_authority(),
            timeout: Duration::from_secs(5),
            metrics,
            trace: None,
            spans: None,
            shared_state: None,
            epoch_at_start: None,
        };
        let vars = ComponentConfig::new(config.service.variables(), Some("export-key".into())).variables();
        let state = RequestState::new(egress, vars, kv.clone(), 64 << 20);
        let mut store = Store::new(&engine, state);
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = linker.instantiate_async(&mut store, &component).await.expect("instantiate");
        let interface = instance.get_export_index(&mut store, None, "stock:service/prices@1.0.0").expect("prices export");
        let function = instance.get_export_index(&mut store, Some(&interface), "closing-prices").expect("closing-prices");
        let func = instance.get_func(&mut store, function).expect("func");
        let params = [Val::Option(symbol.map(|s| Box::new(Val::String(s.into())))), Val::Option(days.map(|d| Box::new(Val::U32(d))))];
        let mut results = [Val::Bool(false)];
        func.call_async(&mut store, &params, &mut results).await.expect("call");
        results[0].clone()
    })
}

fn field<'a>(record: &'a [(String, Val)], name: &str) -> &'a Val {
    &record.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no field {name}")).1
}

#[test]
fn closing_prices_export_answers_exactly_and_uses_the_shared_cache() {
    let sim = Sim::start();
    let kv = Buckets::in_memory(100);
    let Val::Result(Ok(Some(series))) = call(Some("ibm"), Some(3), &sim, &kv) else { panic!("expected a series") };
    let Val::Record(series) = *series else { panic!("series is a record") };
    assert_eq!(field(&series, "symbol"), &Val::String("IBM".into()));
    assert_eq!(field(&series, "ndays"), &Val::U32(3));
    let closes = oracle_closes(&sim.series("IBM"));
    let last3: Vec<i64> = closes[closes.len() - 3..].iter().map(|(_, c)| *c).collect();
    assert_eq!(field(&series, "average"), &Val::String(oracle_average(&last3)));

    let before = sim.calls();
    let Val::Result(Ok(Some(_))) = call(Some("IBM"), Some(10), &sim, &kv) else { panic!("expected a series") };
    assert_eq!(sim.calls(), before, "the second call is served from the shared keyvalue store");
}

#[test]
fn closing_prices_export_returns_typed_errors() {
    let sim = Sim::start();
    let kv = Buckets::in_memory(100);
    for (symbol, days, case) in
        [(Some("NOPE"), Some(3), "unknown-symbol"), (Some("bad symbol"), None, "invalid-input"), (None, Some(0), "invalid-input")]
    {
        let Val::Result(Err(Some(error))) = call(symbol, days, &sim, &kv) else { panic!("{symbol:?}/{days:?}: expected an error") };
        let Val::Variant(name, _) = *error else { panic!("error is a variant") };
        assert_eq!(name, case, "{symbol:?}/{days:?}");
    }
}
