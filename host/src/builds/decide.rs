//! The one place that decides what a candidate does: swap, canary, drop the canary, or nothing. Every
//! source asks for a [`Mode`]; the door turns it into an [`Action`] from the roles as they are.

/// What a source asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// What the settings say: a canary at CANARY_PERCENT when it is set, else a full swap. A source
    /// that delivers "the build that should run" (the COMPONENT file) asks for this: putting the stable
    /// build back drops a canary, and without CANARY_PERCENT the canary's build promotes it.
    Policy,
    /// Serve it to everyone (an admin upload without `canary=`).
    Swap,
    /// A canary taking this share of new requests (1..=99; an admin upload with `canary=P`).
    Canary(u8),
}

/// What the door does with a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It is already in the role asked for.
    Unchanged,
    /// The stable build came back while canary `id` runs: the canary ends.
    DropCanary(u64),
    /// Check it, then serve it to everyone.
    Swap,
    /// Check it, then start it as a canary at this share.
    Canary(u8),
}

/// The roles as they are when a candidate arrives (digests).
#[derive(Debug, Clone, Copy)]
pub struct Roles<'a> {
    /// The stable build's digest.
    pub stable: &'a str,
    /// The running canary's id and digest.
    pub canary: Option<(u64, &'a str)>,
}

/// Decides what a candidate with `digest` does, asked for with `mode`, given CANARY_PERCENT.
pub fn decide(mode: Mode, digest: &str, roles: Roles<'_>, canary_percent: Option<u8>) -> Action {
    let is_stable = digest == roles.stable;
    let is_canary = roles.canary.is_some_and(|(_, canary)| canary == digest);
    match mode {
        Mode::Policy => match (canary_percent, roles.canary) {
            (Some(_), Some((id, _))) if is_stable => Action::DropCanary(id),
            (Some(_), Some(_)) if is_canary => Action::Unchanged,
            _ if is_stable => Action::Unchanged,
            (Some(percent), _) => Action::Canary(percent),
            (None, _) => Action::Swap,
        },
        Mode::Swap if is_stable => Action::Unchanged,
        Mode::Swap => Action::Swap,
        Mode::Canary(_) if is_stable => Action::Unchanged,
        Mode::Canary(percent) => Action::Canary(percent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mode_meets_every_role_once() {
        let (stable, canary, new) = ("s", "c", "n");
        let without = Roles { stable, canary: None };
        let with = Roles { stable, canary: Some((7, canary)) };
        for (mode, digest, roles, percent, want) in [
            // The file (policy) without CANARY_PERCENT: every change is a swap; the canary's build promotes it.
            (Mode::Policy, new, without, None, Action::Swap),
            (Mode::Policy, stable, without, None, Action::Unchanged),
            (Mode::Policy, canary, with, None, Action::Swap),
            (Mode::Policy, stable, with, None, Action::Unchanged),
            // With CANARY_PERCENT: a change starts a canary; the stable build back drops it.
            (Mode::Policy, new, without, Some(10), Action::Canary(10)),
            (Mode::Policy, new, with, Some(10), Action::Canary(10)),
            (Mode::Policy, stable, with, Some(10), Action::DropCanary(7)),
            (Mode::Policy, canary, with, Some(10), Action::Unchanged),
            (Mode::Policy, stable, without, Some(10), Action::Unchanged),
            // Explicit requests do what they say, whatever CANARY_PERCENT is.
            (Mode::Swap, new, with, Some(10), Action::Swap),
            (Mode::Swap, canary, with, None, Action::Swap),
            (Mode::Swap, stable, with, None, Action::Unchanged),
            (Mode::Canary(30), new, without, None, Action::Canary(30)),
            (Mode::Canary(30), canary, with, Some(10), Action::Canary(30)),
            (Mode::Canary(30), stable, with, None, Action::Unchanged),
        ] {
            assert_eq!(decide(mode, digest, roles, percent), want, "{mode:?} {digest} {roles:?} {percent:?}");
        }
    }
}
