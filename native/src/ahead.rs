//! Lookahead: what a tenant will ask for within a horizon, not only next.
//!
//! A warm lands some requests after it is named (serve's event->warm delay), so the
//! one-step successor of a key is often asked for before its warm arrives. Two parts:
//!
//! * `Ahead`, a tenant's *window* successor table: every key counts each distinct
//!   key the tenant asks for within its next `window` requests (a probability graph
//!   over a lookahead window, as PG builds one). Its top successors are the LSTM's
//!   `AHEAD` candidate classes. Same `Table` (table.rs) and bounds as the one-step one,
//!   and the same byte budget (the tracker's `Pool`).
//! * `Horizon`, the training target of a step: the classes whose candidate the tenant
//!   asks for after the warm would land (`lead` requests of the whole stream later)
//!   and within its next `horizon` requests from then, and not between naming and
//!   landing (a request there misses and caches the key itself). With `lead` 0 and
//!   `horizon` 1 this is the one-step target: the classes that named the next key.

use std::collections::VecDeque;

use crate::table::{Pool, Table};
use crate::Key;

/// A tenant's recent keys and window successor table.
#[derive(Default)]
pub(crate) struct Ahead {
    /// the last `window` keys, oldest first, each with whether it occurs again later
    /// in the window (then only that later place counts)
    recent: VecDeque<(Key, bool)>,
    pub(crate) table: Table,
}

impl Ahead {
    pub(crate) fn new(table: Table) -> Ahead {
        Ahead { recent: VecDeque::new(), table }
    }

    /// `key` was asked for: each distinct other key of the last `window` counts it,
    /// oldest first (one pass: a key's earlier places are marked as it recurs).
    pub(crate) fn observe(&mut self, pool: &mut Pool, key: &Key, window: usize, max_keys: usize,
                          max_succ: usize) {
        if window == 0 {
            return;
        }
        let mut again = None; // key's newest earlier place: it now occurs later
        for (i, (prev, later)) in self.recent.iter().enumerate() {
            if prev == key {
                if !*later {
                    again = Some(i);
                }
            } else if !*later {
                self.table.learn(pool, prev.clone(), key, max_keys, max_succ);
            }
        }
        if let Some(i) = again {
            self.recent[i].1 = true;
        }
        self.recent.push_back((key.clone(), false));
        if self.recent.len() > window {
            self.recent.pop_front();
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.table.bytes() + self.recent.capacity() * std::mem::size_of::<(Key, bool)>()
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
