//! One tenant's first-order successor table: the one implementation behind the
//! `markov` baseline (`Markov`, markov.rs) and the LSTM's candidate tracker
//! (`Tracker`, whose rank classes and budget shadow read it).
//!
//! Semantics (tests/reference_tracker.py is the Python oracle the tests compare with):
//! a key's successors are kept in insertion order with their counts and ranked by
//! count, the first seen first among equal counts; at most `max_succ` per key, a new
//! successor replacing the least frequent one (the latest among ties); at most
//! `max_keys` keys, the one least recently the source of a transition evicted for a
//! new key. `total` counts every transition out of a key, replaced successors
//! included: the `markov` score of a successor is its count over it.

use crate::Key;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

/// The successors of one key.
pub(crate) struct Row {
    used: u64,
    pub(crate) total: i64,
    pub(crate) succ: Vec<(Key, i64)>,
}

#[derive(Default)]
pub(crate) struct Table {
    rows: FxHashMap<Key, Row>,
    /// (use stamp, key), least recently used first; an entry whose stamp is no longer
    /// its row's is stale and skipped (compacted once stale entries outnumber rows).
    /// Kept only once the table has been full (`ordered`): before that only the rows'
    /// stamps move, and the order is built from them the first time a key is evicted
    /// (the same order: each touch takes a new, larger stamp).
    order: VecDeque<(u64, Key)>,
    ordered: bool,
    clock: u64,
}

impl Table {
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn row(&self, key: &Key) -> Option<&Row> {
        self.rows.get(key)
    }

    /// The successors of `key`, None when it has no row or an empty one.
    pub(crate) fn successors(&self, key: &Key) -> Option<&[(Key, i64)]> {
        self.rows.get(key).map(|r| r.succ.as_slice()).filter(|v| !v.is_empty())
    }

    /// Count the transition `prev -> key`.
    pub(crate) fn learn(&mut self, prev: Key, key: &Key, max_keys: usize, max_succ: usize) {
        self.clock += 1;
        let stamp = self.clock;
        if let Some(row) = self.rows.get_mut(&prev) {
            row.used = stamp;
            row.total += 1;
            count(&mut row.succ, key, max_succ);
            if self.ordered {
                self.order.push_back((stamp, prev));
            }
        } else {
            if self.rows.len() >= max_keys {
                self.evict_lru();
            }
            if self.ordered {
                self.order.push_back((stamp, prev.clone()));
            }
            self.rows.insert(prev, Row { used: stamp, total: 1, succ: vec![(key.clone(), 1)] });
        }
        self.compact();
    }

    /// Put a whole row (a seed), as the most recently used; replaces `key`'s row.
    pub(crate) fn put(&mut self, key: Key, succ: Vec<(Key, i64)>, total: i64, max_keys: usize) {
        self.clock += 1;
        let stamp = self.clock;
        if self.ordered {
            self.order.push_back((stamp, key.clone()));
        }
        self.rows.insert(key, Row { used: stamp, total, succ });
        while self.rows.len() > max_keys {
            self.evict_lru();
        }
        self.compact();
    }

    /// Remove `key`'s row, returning it.
    pub(crate) fn take(&mut self, key: &Key) -> Option<Row> {
        self.rows.remove(key)
    }

    /// The rows, least recently used first.
    pub(crate) fn rows_lru_first(&self) -> Vec<(&Key, &Row)> {
        if !self.ordered {
            let mut rows: Vec<(&Key, &Row)> = self.rows.iter().collect();
            rows.sort_unstable_by_key(|(_, r)| r.used);
            return rows;
        }
        self.order.iter().filter_map(|(s, k)| {
            self.rows.get_key_value(k).filter(|(_, r)| r.used == *s)
        }).collect()
    }

    fn evict_lru(&mut self) {
        if !self.ordered {
            let mut order: Vec<(u64, Key)> = self.rows.iter().map(|(k, r)| (r.used, k.clone())).collect();
            order.sort_unstable_by_key(|e| e.0);
            self.order = order.into();
            self.ordered = true;
        }
        while let Some((s, k)) = self.order.pop_front() {
            if self.rows.get(&k).is_some_and(|r| r.used == s) {
                self.rows.remove(&k);
                return;
            }
        }
    }

    fn compact(&mut self) {
        if self.ordered && self.order.len() > 2 * self.rows.len() + 64 {
            let rows = &self.rows;
            self.order.retain(|(s, k)| rows.get(k).is_some_and(|r| r.used == *s));
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        let key_bytes = |k: &Key| match k {
            Key::Int(_) => 0,
            Key::Str(s) | Key::Big(s) => s.len(),
        };
        let entry = std::mem::size_of::<(Key, Row)>() + 8; // + hash ctrl
        let mut n = self.rows.capacity() * entry
            + self.order.capacity() * std::mem::size_of::<(u64, Key)>();
        for (k, r) in &self.rows {
            n += 2 * key_bytes(k) + r.succ.capacity() * std::mem::size_of::<(Key, i64)>();
            n += r.succ.iter().map(|(s, _)| key_bytes(s)).sum::<usize>();
        }
        n
    }
}

/// One more transition to `key` among `succ` (see the module docs for the bound).
fn count(succ: &mut Vec<(Key, i64)>, key: &Key, max_succ: usize) {
    if let Some(e) = succ.iter_mut().find(|e| e.0 == *key) {
        e.1 += 1;
    } else if succ.len() < max_succ {
        succ.push((key.clone(), 1));
    } else if !succ.is_empty() {
        // replace the least frequent successor, the latest among ties
        let mut worst = 0;
        for (i, e) in succ.iter().enumerate() {
            if e.1 <= succ[worst].1 {
                worst = i;
            }
        }
        succ.remove(worst);
        succ.push((key.clone(), 1));
    }
}

/// The `k` most frequent of `succ`, first seen first among equal counts.
pub(crate) fn top(succ: &[(Key, i64)], k: usize) -> Vec<&(Key, i64)> {
    let mut out = Vec::with_capacity(k.min(succ.len()));
    for_top(succ, k, |e| out.push(e));
    out
}

/// `f` on each of `top(succ, k)` in order, without allocating for short tables.
pub(crate) fn for_top<'s>(succ: &'s [(Key, i64)], k: usize, mut f: impl FnMut(&'s (Key, i64))) {
    let n = succ.len();
    if n > 64 {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&a, &b| succ[b].1.cmp(&succ[a].1)); // stable
        idx.into_iter().take(k).for_each(|i| f(&succ[i]));
        return;
    }
    let mut taken = 0u64;
    for _ in 0..k.min(n) {
        let mut best = usize::MAX;
        for (i, e) in succ.iter().enumerate() {
            if taken >> i & 1 == 0 && (best == usize::MAX || e.1 > succ[best].1) {
                best = i;
            }
        }
        taken |= 1 << best;
        f(&succ[best]);
    }
}
