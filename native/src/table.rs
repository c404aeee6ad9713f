//! One tenant's first-order successor table: the one implementation behind the
//! `markov` baseline (`Markov`, markov.rs) and the LSTM's candidate tracker
//! (`Tracker`, whose rank classes and budget shadow read it).
//!
//! Semantics (tests/reference_tracker.py is the Python oracle the tests compare with):
//! a key's successors are kept in insertion order with their counts and ranked by
//! count, the first seen first among equal counts; at most `max_succ` per key, a new
//! successor replacing the least frequent one (the latest among ties); at most
//! `max_keys` keys per table, the one least recently the source of a transition evicted
//! for a new key. `total` counts every transition out of a key, replaced successors
//! included: the `markov` score of a successor is its count over it.
//!
//! Memory: every table of one owner (a `Markov`, a `Tracker`: all its tenants, the
//! window tables too) draws on one `Pool`, a byte budget. Each row is charged
//! `row_bytes` (`ROW_BYTES` + twice its key's string length + `SUCC_BYTES` and the
//! string length of each successor; integer keys have none), kept up to date as rows
//! change; once the owner's step has learnt, `Pool::fit` evicts the least recently
//! used rows of all its tables (one clock) while the charge exceeds the budget. A
//! tenant with many keys thus holds many rows, and the total stays bounded.

use crate::Key;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

/// What a row costs besides its successors (64-bit layout): its map entry (key and
/// `Row`, 64 bytes) with the hash map's control byte and slack (8), and an entry of the
/// pool's recency order (40). Strings add their length (`key_bytes`).
pub(crate) const ROW_BYTES: usize = 112;
/// What one successor costs: its `(Key, i64)` entry.
pub(crate) const SUCC_BYTES: usize = 32;
const _: () = assert!(ROW_BYTES == std::mem::size_of::<(Key, Row)>() + 8
                      + std::mem::size_of::<(u64, u64, Key)>()
                      && SUCC_BYTES == std::mem::size_of::<(Key, i64)>());

fn key_bytes(k: &Key) -> usize {
    match k {
        Key::Int(_) => 0,
        Key::Str(s) | Key::Big(s) => s.len(),
    }
}

/// The bytes a row is charged (module docs).
pub(crate) fn row_bytes(key: &Key, succ: &[(Key, i64)]) -> usize {
    ROW_BYTES + 2 * key_bytes(key) + succ.iter().map(|(s, _)| SUCC_BYTES + key_bytes(s)).sum::<usize>()
}

/// The successors of one key.
pub(crate) struct Row {
    used: u64,
    pub(crate) total: i64,
    pub(crate) succ: Vec<(Key, i64)>,
}

/// One owner's byte budget over all its tables, and their shared recency clock.
pub(crate) struct Pool {
    limit: usize,
    used: usize,
    rows: usize,
    evictions: u64,
    clock: u64,
    /// (use stamp, table id, key), least recently used first; an entry whose stamp is
    /// no longer its row's is stale and skipped. Kept only once the budget has been
    /// exceeded (`ordered`), as `Table::order` is.
    order: VecDeque<(u64, u64, Key)>,
    ordered: bool,
    /// the tenant of each table id (ids are never reused)
    owners: FxHashMap<u64, Box<str>>,
    next_id: u64,
}

/// A tenant's state as the pool sees it: its tables.
pub(crate) trait Owner {
    fn table_mut(&mut self, id: u64) -> Option<&mut Table>;
    fn tables(&self) -> Vec<&Table>;
}

impl Pool {
    pub(crate) fn new(limit: usize) -> Pool {
        Pool { limit, used: 0, rows: 0, evictions: 0, clock: 0, order: VecDeque::new(),
               ordered: false, owners: FxHashMap::default(), next_id: 1 }
    }

    /// A new, empty table of `tenant`.
    pub(crate) fn table(&mut self, tenant: &str) -> Table {
        let id = self.next_id;
        self.next_id += 1;
        self.owners.insert(id, tenant.into());
        Table { id, ..Table::default() }
    }

    /// `tenant`'s tables are dropped: they no longer count.
    pub(crate) fn release(&mut self, tables: &[&Table]) {
        for t in tables {
            self.owners.remove(&t.id);
            self.used -= t.bytes;
            self.rows -= t.rows.len();
        }
    }

    /// (bytes charged, rows, rows evicted so far, the budget)
    pub(crate) fn stats(&self) -> (usize, usize, u64, usize) {
        (self.used, self.rows, self.evictions, self.limit)
    }

    fn stamp(&mut self, id: u64, key: &Key) -> u64 {
        self.clock += 1;
        if self.ordered {
            self.order.push_back((self.clock, id, key.clone()));
        }
        self.clock
    }

    /// Evict the least recently used rows of all `tenants`' tables while the charge
    /// exceeds the budget.
    pub(crate) fn fit<T: Owner>(&mut self, tenants: &mut FxHashMap<Box<str>, T>) {
        if self.used > self.limit {
            if !self.ordered {
                let mut order: Vec<(u64, u64, Key)> = tenants.values()
                    .flat_map(|o| o.tables())
                    .flat_map(|t| t.rows.iter().map(|(k, r)| (r.used, t.id, k.clone())))
                    .collect();
                order.sort_unstable_by_key(|e| e.0);
                self.order = order.into();
                self.ordered = true;
            }
            while self.used > self.limit {
                let Some((s, id, k)) = self.order.pop_front() else { break };
                let Some(t) = self.owners.get(&id).and_then(|n| tenants.get_mut(n))
                    .and_then(|o| o.table_mut(id)) else { continue };
                if t.rows.get(&k).is_some_and(|r| r.used == s) {
                    t.remove(self, &k);
                    self.evictions += 1;
                }
            }
        }
        if self.ordered && self.order.len() > 2 * self.rows + 64 {
            let (owners, tenants) = (&self.owners, &*tenants);
            self.order.retain(|(s, id, k)| {
                owners.get(id).and_then(|n| tenants.get(n))
                    .and_then(|o| o.tables().into_iter().find(|t| t.id == *id))
                    .and_then(|t| t.rows.get(k)).is_some_and(|r| r.used == *s)
            });
        }
    }
}

#[derive(Default)]
pub(crate) struct Table {
    id: u64,
    rows: FxHashMap<Key, Row>,
    /// the bytes its rows are charged
    bytes: usize,
    /// (use stamp, key), least recently used first; an entry whose stamp is no longer
    /// its row's is stale and skipped (compacted once stale entries outnumber rows).
    /// Kept only once the table has been full (`ordered`): before that only the rows'
    /// stamps move, and the order is built from them the first time a key is evicted
    /// (the same order: each touch takes a new, larger stamp).
    order: VecDeque<(u64, Key)>,
    ordered: bool,
}

impl Table {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

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

    fn charge(&mut self, pool: &mut Pool, add: usize, sub: usize) {
        self.bytes = self.bytes + add - sub;
        pool.used = pool.used + add - sub;
    }

    /// Count the transition `prev -> key` (the owner then calls `Pool::fit`).
    pub(crate) fn learn(&mut self, pool: &mut Pool, prev: Key, key: &Key, max_keys: usize,
                        max_succ: usize) {
        let stamp = pool.stamp(self.id, &prev);
        if let Some(row) = self.rows.get_mut(&prev) {
            row.used = stamp;
            row.total += 1;
            let (add, sub) = count(&mut row.succ, key, max_succ);
            self.charge(pool, add, sub);
            if self.ordered {
                self.order.push_back((stamp, prev));
            }
        } else {
            if self.rows.len() >= max_keys {
                self.evict_lru(pool);
            }
            if self.ordered {
                self.order.push_back((stamp, prev.clone()));
            }
            let succ = vec![(key.clone(), 1)];
            self.charge(pool, row_bytes(&prev, &succ), 0);
            pool.rows += 1;
            self.rows.insert(prev, Row { used: stamp, total: 1, succ });
        }
        self.compact();
    }

    /// Put a whole row (a seed), as the most recently used; replaces `key`'s row.
    pub(crate) fn put(&mut self, pool: &mut Pool, key: Key, succ: Vec<(Key, i64)>, total: i64,
                      max_keys: usize) {
        self.remove(pool, &key);
        let stamp = pool.stamp(self.id, &key);
        if self.ordered {
            self.order.push_back((stamp, key.clone()));
        }
        self.charge(pool, row_bytes(&key, &succ), 0);
        pool.rows += 1;
        self.rows.insert(key, Row { used: stamp, total, succ });
        while self.rows.len() > max_keys {
            self.evict_lru(pool);
        }
        self.compact();
    }

    /// Remove `key`'s row, returning it.
    pub(crate) fn take(&mut self, pool: &mut Pool, key: &Key) -> Option<Row> {
        let row = self.rows.remove(key)?;
        self.charge(pool, 0, row_bytes(key, &row.succ));
        pool.rows -= 1;
        Some(row)
    }

    fn remove(&mut self, pool: &mut Pool, key: &Key) {
        let _ = self.take(pool, key);
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

    fn evict_lru(&mut self, pool: &mut Pool) {
        if !self.ordered {
            let mut order: Vec<(u64, Key)> = self.rows.iter().map(|(k, r)| (r.used, k.clone())).collect();
            order.sort_unstable_by_key(|e| e.0);
            self.order = order.into();
            self.ordered = true;
        }
        while let Some((s, k)) = self.order.pop_front() {
            if self.rows.get(&k).is_some_and(|r| r.used == s) {
                self.remove(pool, &k);
                pool.evictions += 1;
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

    /// Bytes held (an estimate from capacities and key lengths).
    pub(crate) fn bytes(&self) -> usize {
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

/// One more transition to `key` among `succ` (see the module docs for the bound);
/// returns the bytes (added, removed) by it.
fn count(succ: &mut Vec<(Key, i64)>, key: &Key, max_succ: usize) -> (usize, usize) {
    if let Some(e) = succ.iter_mut().find(|e| e.0 == *key) {
        e.1 += 1;
        (0, 0)
    } else if succ.len() < max_succ {
        succ.push((key.clone(), 1));
        (SUCC_BYTES + key_bytes(key), 0)
    } else if !succ.is_empty() {
        // replace the least frequent successor, the latest among ties
        let mut worst = 0;
        for (i, e) in succ.iter().enumerate() {
            if e.1 <= succ[worst].1 {
                worst = i;
            }
        }
        let (gone, _) = succ.remove(worst);
        succ.push((key.clone(), 1));
        (key_bytes(key), key_bytes(&gone))
    } else {
        (0, 0)
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
