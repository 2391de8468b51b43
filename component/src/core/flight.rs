//! Single flight across every instance sharing the store: per symbol, one leader calls the upstream
//! and the others wait for its result. A leader holds a lease; a ticket whose lease has run out was
//! orphaned (its leader was killed) and exactly one follower takes over. Followers never remove a live
//! leader's ticket, so a slow upstream gets one call, not one per impatient waiter.

use super::cache;
use super::env::{Env, Key};
use super::error::Error;
use super::layout;
use super::model::{Series, Symbol};

/// How often a follower looks for the leader's result.
pub const FLIGHT_POLL_MS: u64 = 20;
/// Slack beyond the upstream timeout: a follower's patience, and the lease beyond the leader's own deadline.
pub const FLIGHT_GRACE_MS: u64 = 2_000;

/// Runs `lead` as the only caller for `symbol`, or waits for the one that is running. `seen_at` is the
/// fetch time of the series the caller already has; a newer one is the leader's result.
pub fn single_flight(
    env: &impl Env,
    symbol: &Symbol,
    seen_at: u64,
    upstream_timeout_ms: u64,
    lead: impl FnOnce() -> Result<Series, Error>,
) -> Result<Series, Error> {
    let keys = Keys::new(symbol.as_str());
    let deadline = env.now_ms().saturating_add(upstream_timeout_ms + FLIGHT_GRACE_MS);
    loop {
        // `None`: the store failed; leading without a ticket beats refusing every request.
        if matches!(env.kv_increment(&keys.ticket, 1), None | Some(1)) {
            return run_as_leader(env, &keys, upstream_timeout_ms, lead);
        }
        match follow(env, &keys, symbol, seen_at, deadline) {
            Followed::Done(result) => return result,
            Followed::Lead => continue,
            Followed::GaveUp => return Err(Error::UpstreamTimeout(upstream_timeout_ms)),
        }
    }
}

/// Runs `lead` holding the ticket, leaves its outcome for the followers, and ends the flight: the ticket and
/// the lease (the only keys a flight keeps in the state bucket) are removed whatever `lead` returned.
fn run_as_leader(
    env: &impl Env,
    keys: &Keys,
    upstream_timeout_ms: u64,
    lead: impl FnOnce() -> Result<Series, Error>,
) -> Result<Series, Error> {
    let until = env.now_ms().saturating_add(upstream_timeout_ms + FLIGHT_GRACE_MS);
    env.kv_set(&keys.lease, until.to_string().as_bytes());
    let result = lead();
    match &result {
        Ok(_) => env.kv_delete(&keys.outcome),
        Err(error) => env.kv_set(&keys.outcome, error.encode_outcome().as_bytes()),
    }
    env.kv_delete(&keys.lease);
    env.kv_delete(&keys.ticket);
    result
}

/// The keys of one symbol's flight.
struct Keys {
    symbol: String,
    ticket: Key,
    lease: Key,
    outcome: Key,
}

impl Keys {
    fn new(symbol: &str) -> Self {
        Self {
            symbol: symbol.to_owned(),
            ticket: layout::flight_ticket(symbol),
            lease: layout::flight_lease(symbol),
            outcome: layout::flight_outcome(symbol),
        }
    }
}

/// How waiting for a leader ended.
enum Followed {
    /// The leader finished: its series or its error.
    Done(Result<Series, Error>),
    /// There is no leader any more (it vanished, or its lease ran out and we took over): try to lead.
    Lead,
    /// Our own patience ran out while a live leader is still working.
    GaveUp,
}

fn follow(env: &impl Env, keys: &Keys, symbol: &Symbol, seen_at: u64, deadline: u64) -> Followed {
    let mut lease_missing_since: Option<u64> = None;
    loop {
        env.sleep_ms(FLIGHT_POLL_MS);
        if let Some(series) = newer_series(env, symbol, seen_at) {
            return Followed::Done(Ok(series));
        }
        if env.kv_get(&keys.ticket).is_none() {
            if let Some(series) = newer_series(env, symbol, seen_at) {
                return Followed::Done(Ok(series));
            }
            return match env.kv_get(&keys.outcome) {
                Some(outcome) => Followed::Done(Err(Error::decode_outcome(&String::from_utf8_lossy(&outcome)))),
                None => Followed::Lead,
            };
        }
        let now = env.now_ms();
        let lease = env.kv_get(&keys.lease).map(|b| String::from_utf8_lossy(&b).into_owned());
        let orphaned = match &lease {
            Some(text) => text.parse::<u64>().map_or(true, |until| now >= until),
            // A leader writes its lease right after winning its ticket; a lease missing for longer than
            // the grace period means it died in between.
            None => now.saturating_sub(*lease_missing_since.get_or_insert(now)) >= FLIGHT_GRACE_MS,
        };
        if orphaned && take_over(env, keys, lease.as_deref().unwrap_or("none")) {
            return Followed::Lead;
        }
        if now >= deadline {
            return Followed::GaveUp;
        }
    }
}

/// Frees an orphaned ticket; only the first follower to ask for the same dead lease does it. The
/// takeover key stays (it names one dead lease and is never reused), so a follower that read the same
/// lease late cannot win again and remove the new leader's ticket. It lives in the memo bucket, which
/// forgets it long after the last follower of that lease gave up; were it evicted sooner, the worst case
/// is a second leader, one more upstream call.
fn take_over(env: &impl Env, keys: &Keys, lease: &str) -> bool {
    let takeover = layout::flight_takeover(&keys.symbol, lease);
    if !matches!(env.kv_increment(&takeover, 1), Some(1)) {
        return false;
    }
    env.log(&format!("single flight: leader of {} vanished (lease {lease}); taking over", keys.symbol));
    env.kv_delete(&keys.ticket);
    env.kv_delete(&keys.lease);
    true
}

fn newer_series(env: &impl Env, symbol: &Symbol, seen_at: u64) -> Option<Series> {
    env.kv_get(&layout::series(symbol.as_str())).and_then(|bytes| cache::decode(&bytes)).filter(|s| s.fetched_at_ms > seen_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::env::Bucket;
    use crate::core::env::fake::FakeEnv;

    const T0: u64 = 1_764_000_000_000;
    const TIMEOUT: u64 = 10_000;

    fn msft() -> Symbol {
        Symbol::parse("MSFT").expect("valid")
    }

    fn series_at(ms: u64) -> Series {
        let closes =
            crate::core::alphavantage::parse_answer(200, br#"{"Time Series (Daily)": {"2026-11-20": {"4. close": "5"}}}"#).expect("valid");
        Series { fetched_at_ms: ms, closes }
    }

    fn env() -> FakeEnv {
        let env = FakeEnv::default();
        env.now.set(T0);
        env
    }

    #[test]
    fn the_leader_runs_once_and_cleans_up() {
        let env = env();
        let got = single_flight(&env, &msft(), 0, TIMEOUT, || Ok(series_at(T0)));
        assert_eq!(got.map(|s| s.fetched_at_ms), Ok(T0));
        for key in [layout::flight_ticket("MSFT"), layout::flight_lease("MSFT"), layout::flight_outcome("MSFT")] {
            assert_eq!(env.kv_get(&key), None, "{key:?} left behind");
        }
    }

    #[test]
    fn a_failed_leader_leaves_its_outcome_for_followers_in_the_memo_bucket() {
        let env = env();
        let got = single_flight(&env, &msft(), 0, TIMEOUT, || Err(Error::UnknownSymbol("MSFT".into())));
        assert_eq!(got, Err(Error::UnknownSymbol("MSFT".into())));
        assert_eq!(env.kv_get(&layout::flight_outcome("MSFT")), Some(b"unknown:MSFT".to_vec()));
        assert_eq!(env.keys_in(Bucket::Memo), [layout::flight_outcome("MSFT").name]);
    }

    #[test]
    fn a_finished_flight_leaves_nothing_in_the_state_bucket() {
        // See the filed issue: every failed symbol left `flight/v1/{SYM}/outcome` in the state bucket forever.
        let outcomes: [fn(u64) -> Result<Series, Error>; 4] = [
            |now| Ok(series_at(now)),
            |_| Err(Error::UnknownSymbol("MSFT".into())),
            |_| Err(Error::UpstreamTimeout(TIMEOUT)),
            |_| Err(Error::BadUpstream("garbage".into())),
        ];
        for outcome in outcomes {
            let env = env();
            let got = single_flight(&env, &msft(), 0, TIMEOUT, || outcome(T0));
            assert_eq!(env.keys_in(Bucket::State), Vec::<String>::new(), "after {got:?}");
        }
        // A flight that took over an orphan ends just as clean.
        let env = env();
        env.kv_set(&layout::flight_ticket("MSFT"), b"1");
        env.kv_set(&layout::flight_lease("MSFT"), (T0 - 1).to_string().as_bytes());
        assert!(single_flight(&env, &msft(), 0, TIMEOUT, || Err(Error::UpstreamTimeout(TIMEOUT))).is_err());
        assert_eq!(env.keys_in(Bucket::State), Vec::<String>::new());
        assert_eq!(env.keys_in(Bucket::Memo).len(), 2, "the outcome and the takeover ticket: {:?}", env.keys_in(Bucket::Memo));
    }

    #[test]
    fn a_follower_waits_for_a_live_leader_and_never_calls() {
        let env = env();
        env.kv_set(&layout::flight_ticket("MSFT"), b"1");
        env.kv_set(&layout::flight_lease("MSFT"), (T0 + TIMEOUT + FLIGHT_GRACE_MS).to_string().as_bytes());
        *env.on_sleep.borrow_mut() = Some(Box::new(|env: &FakeEnv| {
            if env.now_ms() >= T0 + 100 {
                env.kv_set(&layout::series("MSFT"), &cache::encode(&series_at(env.now_ms())));
                env.kv_delete(&layout::flight_ticket("MSFT"));
            }
        }));
        let got = single_flight(&env, &msft(), 0, TIMEOUT, || panic!("a follower must not lead"));
        assert!(got.is_ok());
    }

    #[test]
    fn a_follower_that_gives_up_leaves_a_live_leaders_ticket_alone() {
        // See issue 12, defect 2: waiters used to delete the ticket and become leaders themselves.
        let env = env();
        env.kv_set(&layout::flight_ticket("MSFT"), b"1");
        env.kv_set(&layout::flight_lease("MSFT"), (T0 + 60_000).to_string().as_bytes());
        let got = single_flight(&env, &msft(), 0, TIMEOUT, || panic!("a follower must not lead"));
        assert_eq!(got, Err(Error::UpstreamTimeout(TIMEOUT)));
        assert!(env.now_ms() <= T0 + TIMEOUT + FLIGHT_GRACE_MS + FLIGHT_POLL_MS);
        assert!(env.kv_get(&layout::flight_ticket("MSFT")).is_some(), "the live leader keeps its ticket");
        assert!(env.kv_get(&layout::flight_lease("MSFT")).is_some(), "and its lease");
    }

    #[test]
    fn an_orphaned_ticket_is_taken_over_at_once_when_its_lease_has_run_out() {
        // See issue 12, defect 3: a leader killed by the host deadline left a ticket that made the next
        // request wait out its whole patience and answer 504 without calling upstream.
        let env = env();
        env.kv_set(&layout::flight_ticket("MSFT"), b"1");
        env.kv_set(&layout::flight_lease("MSFT"), (T0 - 1).to_string().as_bytes());
        let got = single_flight(&env, &msft(), 0, TIMEOUT, || Ok(series_at(env.now_ms())));
        assert!(got.is_ok());
        assert!(env.now_ms() <= T0 + 2 * FLIGHT_POLL_MS, "took over within a poll, not after {} ms", env.now_ms() - T0);
        assert_eq!(env.kv_get(&layout::flight_ticket("MSFT")), None);
    }

    #[test]
    fn a_ticket_without_a_lease_is_taken_over_after_the_grace_period() {
        let env = env();
        env.kv_set(&layout::flight_ticket("MSFT"), b"1");
        let got = single_flight(&env, &msft(), 0, TIMEOUT, || Ok(series_at(env.now_ms())));
        assert!(got.is_ok());
        let waited = env.now_ms() - T0;
        assert!((FLIGHT_GRACE_MS..=FLIGHT_GRACE_MS + 2 * FLIGHT_POLL_MS).contains(&waited), "waited {waited} ms");
    }

    #[test]
    fn only_one_follower_takes_over_a_dead_lease() {
        let env = env();
        let dead = (T0 - 1).to_string();
        env.kv_increment(&layout::flight_takeover("MSFT", &dead), 1); // another follower got there first
        assert!(!take_over(&env, &Keys::new("MSFT"), &dead), "a second follower of the same dead lease loses");
        assert!(take_over(&env, &Keys::new("MSFT"), "other-dead-lease"), "the first follower of a dead lease wins");
        assert!(!take_over(&env, &Keys::new("MSFT"), "other-dead-lease"), "a late follower of the same lease cannot win again");
    }
}
