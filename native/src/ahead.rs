//! Lookahead: what a tenant will ask for within a horizon, not only next.
//!
//! A warm lands some requests after it is named (serve's event->warm delay), so the
//! one-step successor of a key is often asked for before its warm arrives. Two parts:
//!
//! * `Ahead`, a tenant's *window* successor table: every key counts each distinct
//!   key the tenant asks for within its next `window` requests once a warm named at
//!   it would land (`lead` requests of the whole stream later; a probability graph
//!   over a lookahead window, as PG builds one, shifted past the delay). Its top
//!   successors are the LSTM's `AHEAD` candidate classes. Same `Table` (table.rs) and
//!   bounds as the one-step one, and the same byte budget (the tracker's `Pool`).
//! * `Horizon`, the training target of a step: the classes whose candidate the tenant
//!   asks for after the warm would land (`lead` requests of the whole stream later)
//!   and within its next `horizon` requests from then, and not between naming and
//!   landing (a request there misses and caches the key itself). With `lead` 0 and
//!   `horizon` 1 this is the one-step target: the classes that named the next key.

use std::collections::VecDeque;

use crate::table::{Pool, Table};
use crate::Key;

/// One of a tenant's recent requests, as a predecessor in the window table.
struct Place {
    key: Key,
    /// its index in the tracker's stream (every tenant's steps)
    index: usize,
    /// a newer place of the same key is active: only that one counts now
    superseded: bool,
    /// the tenant's requests counted against it since it became active
    seen: usize,
}

/// A tenant's recent keys and window successor table.
#[derive(Default)]
pub(crate) struct Ahead {
    /// the tenant's places not yet out of the window, oldest first
    recent: VecDeque<Place>,
    pub(crate) table: Table,
}

impl Ahead {
    pub(crate) fn new(table: Table) -> Ahead {
        Ahead { recent: VecDeque::new(), table }
    }

    /// `key` was asked for at stream index `index`. A place is *active* once a warm
    /// named there would have landed (`index` beyond its own + `lead`, requests of the
    /// whole stream, as `Horizon`'s); each active place counts the tenant's next
    /// `window` requests' keys (not itself), each key from its newest active place only.
    /// With `lead` 0: each distinct other key of the tenant's last `window` requests.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn observe(&mut self, pool: &mut Pool, key: &Key, index: usize, lead: usize,
                          window: usize, max_keys: usize, max_succ: usize) {
        if window == 0 {
            return;
        }
        let active = self.recent.iter().take_while(|p| index > p.index + lead).count();
        for i in 0..active {
            if self.recent[i].seen == 0 {
                // just active: the newest older place of its key stops counting
                if let Some(j) = (0..i).rev().find(|&j| self.recent[j].key == self.recent[i].key) {
                    self.recent[j].superseded = true;
                }
            }
        }
        for p in self.recent.iter_mut().take(active) {
            if !p.superseded && p.key != *key {
                self.table.learn(pool, p.key.clone(), key, max_keys, max_succ);
            }
            p.seen += 1;
        }
        while self.recent.front().is_some_and(|p| p.seen >= window) {
            self.recent.pop_front();
        }
        self.recent.push_back(Place { key: key.clone(), index, superseded: false, seen: 0 });
    }

    pub(crate) fn bytes(&self) -> usize {
        self.table.bytes() + self.recent.capacity() * std::mem::size_of::<Place>()
    }
}

/// One step whose target is still open.
struct Open {
    index: usize,
    cands: Vec<Option<Key>>,
    spoiled: i64,
    right: i64,
    seen: usize,
}

/// Per tenant: its steps whose horizon has not closed yet (module docs).
#[derive(Default)]
pub(crate) struct Horizon {
    open: VecDeque<Open>,
}

impl Horizon {
    /// The tenant asked for `key` at stream index `index`: close what this request
    /// completes as `(step index, target mask)` (NO-WARM, bit 0, when no class was
    /// right), then open the step itself with its candidates.
    pub(crate) fn request(&mut self, index: usize, key: &Key, cands: &[Option<Key>],
                          lead: usize, horizon: usize, mut close: impl FnMut(usize, i64)) {
        for o in &mut self.open {
            let bits = o.cands.iter().enumerate()
                .filter(|(_, c)| c.as_ref() == Some(key))
                .fold(0i64, |b, (i, _)| b | (1 << i));
            if index <= o.index + lead {
                o.spoiled |= bits;
            } else {
                o.right |= bits & !o.spoiled;
                o.seen += 1;
            }
        }
        while self.open.front().is_some_and(|o| o.seen >= horizon) {
            let o = self.open.pop_front().expect("front checked");
            close(o.index, if o.right == 0 { 1 } else { o.right });
        }
        if !cands.is_empty() {
            self.open.push_back(Open { index, cands: cands.to_vec(), spoiled: 0, right: 0,
                                       seen: 0 });
        }
    }
}
