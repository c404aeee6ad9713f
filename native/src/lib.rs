//! The per-event hot path of stream_warmer's LSTM strategy, in Rust.
//!
//! `Tracker` keeps each tenant's successor table and last step, and turns every
//! access into the model's inputs (categorical ids, `correct` / `present` bitmasks)
//! and candidates, one class each (stream_warmer/model/features.py names them);
//! `Cands` holds the candidates of many steps and pools class probabilities into
//! keys; `Markov` (markov.rs) is the `markov` baseline. Both keep their successor
//! tables in `table::Table` (table.rs: its semantics), all of one owner's tables under
//! one byte budget (`table::Pool`). The semantics are those of the
//! Python reference the tests compare against (tests/reference_tracker.py).

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyList, PyString, PyTuple};
use rustc_hash::FxHashMap;

mod ahead;
mod markov;
mod slots;
mod table;

use ahead::{Ahead, Horizon};
use table::{Owner, Pool, Table};

const TENANT_BUCKETS: u32 = 32;
const DELTA_BITS: u32 = 40;
const N_CATS: usize = 8;

/// A key as the model sees it: a canonical decimal int64, any other string, or an
/// integer candidate beyond int64 (never equal to a parsed key, as in Python).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Key {
    Int(i64),
    Str(Box<str>),
    Big(Box<str>),
}

impl Key {
    pub(crate) fn parse(s: &str) -> Key {
        let b = s.as_bytes();
        if !b.is_empty()
            && b.len() < 19
            && b.iter().all(u8::is_ascii_digit)
            && (b.len() == 1 || b[0] != b'0')
        {
            Key::Int(s.parse().expect("18 ASCII digits fit an i64"))
        } else {
            Key::Str(s.into())
        }
    }

    fn plus(base: i64, d: i64) -> Key {
        match base.checked_add(d) {
            Some(v) => Key::Int(v),
            None => Key::Big((i128::from(base) + i128::from(d)).to_string().into()),
        }
    }

    fn to_object(&self, py: Python<'_>) -> PyResult<PyObject> {
        Ok(match self {
            Key::Int(v) => v.into_pyobject(py)?.into_any().unbind(),
            Key::Str(s) => PyString::new(py, s).into_any().unbind(),
            Key::Big(s) => s.parse::<i128>().expect("decimal").into_pyobject(py)?.into_any().unbind(),
        })
    }

    pub(crate) fn to_pystr(&self, py: Python<'_>) -> PyObject {
        match self {
            Key::Int(v) => PyString::new(py, &v.to_string()).into_any().unbind(),
            Key::Str(s) | Key::Big(s) => PyString::new(py, s).into_any().unbind(),
        }
    }

    fn from_object(obj: &Bound<'_, PyAny>) -> PyResult<Key> {
        if let Ok(s) = obj.downcast::<PyString>() {
            return Ok(Key::Str(s.to_str()?.into()));
        }
        if let Ok(v) = obj.extract::<i64>() {
            return Ok(Key::Int(v));
        }
        let v: i128 = obj.extract()?;
        Ok(Key::Big(v.to_string().into()))
    }
}

fn bit_length(v: u64) -> u32 {
    64 - v.leading_zeros()
}

fn signed_log_bucket(delta: i64) -> i64 {
    if delta == 0 {
        return 1;
    }
    let bits = i64::from(bit_length(delta.unsigned_abs()).min(DELTA_BITS));
    if delta > 0 { 1 + bits } else { 2 + i64::from(DELTA_BITS) + bits }
}

/// Python's `bisect.bisect_left` (NaN compares false, as there).
fn bisect_left(edges: &[f64], x: f64) -> i64 {
    let (mut lo, mut hi) = (0usize, edges.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if edges[mid] < x { lo = mid + 1 } else { hi = mid }
    }
    lo as i64
}

#[derive(Default)]
struct TenantState {
    table: Table,
    ahead: Ahead,
    key: Option<Key>,
    ts: i64,
    delta: i64,
    cands: Vec<Option<Key>>,
    bucket: i64,
    probs: Vec<f32>,
    /// The `step_batch` call that last saw this tenant, its group and run length there.
    batch: u64,
    group: i64,
    run: i64,
}

impl Owner for TenantState {
    fn table_mut(&mut self, id: u64) -> Option<&mut Table> {
        if self.table.id() == id {
            Some(&mut self.table)
        } else {
            (self.ahead.table.id() == id).then_some(&mut self.ahead.table)
        }
    }

    fn tables(&self) -> Vec<&Table> {
        vec![&self.table, &self.ahead.table]
    }
}

impl TenantState {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.table.bytes() + self.ahead.bytes()
            + self.cands.capacity() * std::mem::size_of::<Option<Key>>()
            + self.probs.capacity() * 4
    }
}

/// What `step` computed for one access.
struct Stepped {
    cats: [i64; N_CATS],
    correct: i64,
    present: i64,
}

/// Per-tenant candidate tracker (module docs).
#[pyclass(module = "stream_warmer_native")]
struct Tracker {
    ranks: usize,
    deltas: Vec<i64>,
    size_unit: i64,
    max_successors: usize,
    max_keys: usize,
    gap_edges: Vec<f64>,
    size_edges: Vec<f64>,
    offsets: [i64; N_CATS],
    ops: Vec<(String, i64)>,
    /// Lookahead (ahead.rs): the window of the window table, how many requests of the
    /// stream after a key its window starts (the delay a warm lands after), and its
    /// candidate classes.
    ahead_window: usize,
    ahead_lead: usize,
    ahead_ranks: usize,
    /// successors kept per key of the window table (a window of W names up to W - 1
    /// per request, more than the one-step table's `max_successors` needs)
    ahead_successors: usize,
    int_bits: i64,
    last_bit: i64,
    tenants: FxHashMap<Box<str>, TenantState>,
    /// the byte budget of every tenant's tables (table.rs)
    pool: Pool,
    batches: u64, // `step_batch` calls so far
    steps: usize, // steps so far: the next step's index in this tracker's stream
}

/// The attributes of one `AccessEvent` (any object with them).
struct Event<'a> {
    tenant: Bound<'a, PyString>,
    key: Bound<'a, PyString>,
    ts: i64,
    op: Bound<'a, PyString>,
    size: Option<i64>,
}

impl<'a> Event<'a> {
    fn read(ev: &Bound<'a, PyAny>) -> PyResult<Event<'a>> {
        let py = ev.py();
        Ok(Event {
            tenant: ev.getattr(intern!(py, "tenant"))?.downcast_into::<PyString>()?,
            key: ev.getattr(intern!(py, "key"))?.downcast_into::<PyString>()?,
            ts: ev.getattr(intern!(py, "ts"))?.extract()?,
            op: ev.getattr(intern!(py, "op"))?.downcast_into::<PyString>()?,
            size: ev.getattr(intern!(py, "size"))?.extract()?,
        })
    }
}

impl Tracker {
    fn n_classes(&self) -> usize {
        3 + self.ranks + self.deltas.len() + self.ahead_ranks
    }

    fn op_id(&self, op: &str) -> i64 {
        self.ops.iter().find(|(name, _)| name == op).map_or(0, |(_, id)| *id)
    }

    fn state(&mut self, tenant: &str) -> &mut TenantState {
        if !self.tenants.contains_key(tenant) {
            let bucket = i64::from(crc32fast::hash(tenant.as_bytes()) % TENANT_BUCKETS);
            let (table, window) = (self.pool.table(tenant), self.pool.table(tenant));
            let ahead = Ahead::new(window);
            self.tenants.insert(tenant.into(), TenantState { bucket, table, ahead,
                                                             ..Default::default() });
        }
        self.tenants.get_mut(tenant).expect("just inserted")
    }

    /// Observe one access; the tenant's candidates become this step's.
    fn step_one(&mut self, tenant: &str, key_s: &str, ts: i64, op: &str, size: Option<i64>) -> Stepped {
        let (max_keys, max_succ, ranks) = (self.max_keys, self.max_successors, self.ranks);
        let (window, ahead_ranks, ahead_succ, lead) =
            (self.ahead_window, self.ahead_ranks, self.ahead_successors, self.ahead_lead);
        let index = self.steps;
        self.steps += 1;
        let op_id = self.op_id(op);
        let key = Key::parse(key_s);
        let n_classes = self.n_classes();
        let (int_bits, last_bit, size_unit) = (self.int_bits, self.last_bit, self.size_unit);
        let o = self.offsets;
        let gap_edges = std::mem::take(&mut self.gap_edges);
        let size_edges = std::mem::take(&mut self.size_edges);
        let deltas = std::mem::take(&mut self.deltas);
        self.state(tenant);
        let st = self.tenants.get_mut(tenant).expect("just made");
        let pool = &mut self.pool;
        let mut correct = 0i64;
        if !st.cands.is_empty() {
            correct = st.cands.iter().enumerate()
                .filter(|(_, c)| c.as_ref() == Some(&key))
                .fold(0i64, |bits, (i, _)| bits | (1 << i));
            if correct == 0 {
                correct = 1; // NO-WARM (class 0 is never a key)
            }
        }
        let (mut delta_id, mut gap) = (0i64, -1i64);
        if let Some(prev) = st.key.take() {
            if let (Key::Int(k), Key::Int(p)) = (&key, &prev) {
                st.delta = k - p;
                delta_id = signed_log_bucket(st.delta);
            }
            st.table.learn(pool, prev, &key, max_keys, max_succ);
            gap = ts.wrapping_sub(st.ts);
        }
        st.ahead.observe(pool, &key, index, lead, window, max_keys, ahead_succ);
        pool.fit(&mut self.tenants); // may evict this tenant's rows too
        let st = self.tenants.get_mut(tenant).expect("a tenant is never evicted");
        let mut cands = std::mem::take(&mut st.cands); // reuse the buffer
        cands.clear();
        cands.push(None);
        let mut present = 0i64;
        let row = st.table.row(&key);
        let known = i64::from(row.is_some());
        let (top_count, n_succ) = match row.map(|r| &r.succ).filter(|v| !v.is_empty()) {
            Some(succ) => {
                table::for_top(succ, ranks, |e| cands.push(Some(e.0.clone())));
                present = ((1i64 << (cands.len() - 1)) - 1) << 1;
                let max = succ.iter().map(|e| e.1).max().unwrap_or(0);
                (i64::from(bit_length(max.max(0) as u64).min(15)), succ.len() as i64)
            }
            None => (0, 0),
        };
        cands.resize(1 + ranks, None);
        if let Key::Int(k) = key {
            let stride = size.filter(|&s| s != 0).unwrap_or(1).div_euclid(size_unit).max(1);
            cands.push(Some(Key::plus(k, stride)));
            cands.push(if st.delta != 0 { Some(Key::plus(k, st.delta)) } else { None });
            cands.extend(deltas.iter().map(|&d| Some(Key::plus(k, d))));
            present |= int_bits | if st.delta != 0 { last_bit } else { 0 };
        } else {
            cands.resize(n_classes - ahead_ranks, None);
        }
        if ahead_ranks > 0 {
            // the window table's top successors not named by a class above
            let first = cands.len();
            if let Some(succ) = st.ahead.table.successors(&key) {
                table::for_top(succ, first + ahead_ranks, |e| {
                    if cands.len() < n_classes && !cands.iter().any(|c| c.as_ref() == Some(&e.0)) {
                        cands.push(Some(e.0.clone()));
                    }
                });
            }
            present |= ((1i64 << (cands.len() - first)) - 1) << first;
            cands.resize(n_classes, None);
        }
        let gap_id = if gap < 0 { 0 } else { 1 + bisect_left(&gap_edges, (gap as f64).ln_1p()) };
        let size_id = size.map_or(0, |s| 1 + bisect_left(&size_edges, (s as f64).ln_1p()));
        let cats = [o[0] + delta_id, o[1] + top_count, o[2] + n_succ, o[3] + op_id,
                    o[4] + gap_id, o[5] + size_id, o[6] + st.bucket, o[7] + known];
        st.key = Some(key);
        st.ts = ts;
        st.cands = cands;
        st.probs.clear();
        self.gap_edges = gap_edges;
        self.size_edges = size_edges;
        self.deltas = deltas;
        Stepped { cats, correct, present }
    }

    fn cands_of(&self, tenant: &str) -> Vec<Option<Key>> {
        self.tenants.get(tenant).map(|st| st.cands.clone()).unwrap_or_default()
    }
}

pub(crate) fn i64_bytes<'py>(py: Python<'py>, v: &[i64]) -> Bound<'py, PyByteArray> {
    PyByteArray::new_with(py, v.len() * 8, |buf| {
        for (chunk, x) in buf.chunks_exact_mut(8).zip(v) {
            chunk.copy_from_slice(&x.to_ne_bytes());
        }
        Ok(())
    })
    .expect("filling a new bytearray cannot fail")
}

fn f32_rows(buf: &[u8], n_classes: usize) -> PyResult<Vec<f32>> {
    if n_classes == 0 || !buf.len().is_multiple_of(4 * n_classes) {
        return Err(PyValueError::new_err("probabilities are not rows of n_classes float32"));
    }
    Ok(buf.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// Pool a row's probabilities by key (class order), up to `k` best first.
fn pooled_top<'c>(row: &[f32], cands: &'c [Option<Key>], k: usize) -> Vec<(&'c Key, f64)> {
    let mut pooled: Vec<(&Key, f64)> = Vec::with_capacity(cands.len());
    for (cand, &p) in cands.iter().zip(row) {
        if let Some(key) = cand {
            match pooled.iter_mut().find(|e| e.0 == key) {
                Some(e) => e.1 += f64::from(p),
                None => pooled.push((key, f64::from(p))),
            }
        }
    }
    if k == 1 {
        let mut best: Option<(&Key, f64)> = None;
        for &(key, s) in &pooled {
            if best.is_none_or(|b| s > b.1) {
                best = Some((key, s));
            }
        }
        return best.into_iter().collect();
    }
    pooled.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    pooled.truncate(k);
    pooled
}

/// Rows of `(key, score)` picks as a Python list of tuples, or of `make(key, score)`.
/// `threshold` applies to the score before the cap (serve's rule) unless `capped_threshold`.
#[allow(clippy::too_many_arguments)]
fn picks_to_py<'py>(py: Python<'py>, picks: &[(&Key, f64)], as_str: bool, cap: bool,
                    threshold: Option<f64>, capped_threshold: bool,
                    make: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for &(key, s) in picks {
        let score = if cap && s >= 1.0 { 1.0 } else { s };
        if threshold.is_some_and(|t| (if capped_threshold { score } else { s }) < t) {
            continue;
        }
        let k = if as_str { key.to_pystr(py) } else { key.to_object(py)? };
        let score = score.into_pyobject(py)?.into_any().unbind();
        match make {
            Some(make) => out.append(make.call1((k, score))?)?,
            None => out.append(PyTuple::new(py, [k, score])?)?,
        }
    }
    Ok(out)
}

#[pymethods]
impl Tracker {
    #[new]
    #[pyo3(signature = (*, ranks, deltas, size_unit, max_successors, max_keys_per_tenant,
                        table_bytes, gap_edges, size_edges, offsets, ops, ahead_window=0,
                        ahead_ranks=0, ahead_successors=0, ahead_lead=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(ranks: usize, deltas: Vec<i64>, size_unit: i64, max_successors: usize,
           max_keys_per_tenant: usize, table_bytes: usize, gap_edges: Vec<f64>,
           size_edges: Vec<f64>, offsets: Vec<i64>, ops: Vec<(String, i64)>, ahead_window: usize,
           ahead_ranks: usize, ahead_successors: usize, ahead_lead: usize) -> PyResult<Self> {
        let offsets: [i64; N_CATS] = offsets.try_into()
            .map_err(|_| PyValueError::new_err("offsets: one per categorical column (8)"))?;
        if ranks < 1 || size_unit < 1 || max_successors < ranks
            || ranks + deltas.len() + ahead_ranks > 60
            || (ahead_ranks > 0 && ahead_window == 0) || max_keys_per_tenant < 1
            || table_bytes < 1 {
            return Err(PyValueError::new_err("invalid feature spec for the tracker"));
        }
        let base = 1 + ranks as i64;
        let int_bits = (1i64 << base) | (((1i64 << deltas.len()) - 1) << (base + 2));
        // 0: as many as the one-step table keeps (feature specs written before the field)
        let ahead_successors = if ahead_successors == 0 { max_successors } else { ahead_successors };
        Ok(Tracker { ranks, deltas, size_unit, max_successors, max_keys: max_keys_per_tenant,
                     gap_edges, size_edges, offsets, ops, ahead_window, ahead_lead, ahead_ranks,
                     ahead_successors,
                     int_bits, last_bit: 1 << (base + 1),
                     tenants: FxHashMap::default(), pool: Pool::new(table_bytes), batches: 0,
                     steps: 0 })
    }

    fn __len__(&self) -> usize {
        self.tenants.len()
    }

    /// Start the window tables' windows `lead` requests after each key from now on (a
    /// hot swap to a model trained for another delay keeps the tables it learnt).
    fn set_ahead_lead(&mut self, lead: usize) {
        self.ahead_lead = lead;
    }

    /// Drop a tenant's state.
    fn forget(&mut self, tenant: &str) {
        if let Some(st) = self.tenants.remove(tenant) {
            self.pool.release(&st.tables());
        }
    }

    /// The successor tables' (bytes charged against the budget, rows, rows evicted by a
    /// bound so far, the budget in bytes), window tables included.
    fn table_stats(&self) -> (usize, usize, u64, usize) {
        self.pool.stats()
    }

    /// Bytes held for per-tenant state (an estimate from capacities and key lengths).
    fn memory_bytes(&self) -> usize {
        self.tenants.iter().map(|(t, st)| t.len() + 16 + st.bytes()).sum()
    }

    /// Keys held in `tenant`'s successor table.
    fn table_len(&self, tenant: &str) -> usize {
        self.tenants.get(tenant).map_or(0, |st| st.table.len())
    }

    /// Whether `key` (a parsed key: int or str) has a row in `tenant`'s table.
    fn knows(&self, tenant: &str, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let key = Key::from_object(key)?;
        Ok(self.tenants.get(tenant).is_some_and(|st| st.table.row(&key).is_some()))
    }

    /// One access: (cats, correct, present, cands).
    fn step<'py>(&mut self, py: Python<'py>, event: &Bound<'py, PyAny>
                 ) -> PyResult<(Bound<'py, PyTuple>, i64, i64, Bound<'py, PyList>)> {
        let ev = Event::read(event)?;
        let tenant = ev.tenant.to_str()?;
        let s = self.step_one(tenant, ev.key.to_str()?, ev.ts, ev.op.to_str()?, ev.size);
        let cands = PyList::empty(py);
        for c in &self.tenants[tenant].cands {
            cands.append(match c { Some(k) => k.to_object(py)?, None => py.None() })?;
        }
        Ok((PyTuple::new(py, s.cats)?, s.correct, s.present, cands))
    }

    /// Many accesses in order. Returns (cats (N*8 int64), masks (N*2 int64: correct,
    /// present), group (N int64: index into `tenants`), pos (N int64: the step's place
    /// in its tenant's run), tenants (first appearance order), cands or None). With
    /// `keep`, every step's candidates are kept (`Cands`), and with `marks_k` > 0 each
    /// step's top `marks_k` successors of its key right after it (the Markov shadow).
    #[pyo3(signature = (events, keep=false, marks_k=0))]
    #[allow(clippy::type_complexity)]
    fn step_batch<'py>(&mut self, py: Python<'py>, events: &Bound<'py, PyList>, keep: bool,
                       marks_k: usize
                       ) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>,
                                      Bound<'py, PyByteArray>, Bound<'py, PyByteArray>,
                                      Bound<'py, PyList>, Option<Cands>)> {
        let n = events.len();
        let (mut cats, mut masks) = (Vec::with_capacity(n * N_CATS), Vec::with_capacity(2 * n));
        let (mut group, mut pos) = (Vec::with_capacity(n), Vec::with_capacity(n));
        self.batches += 1;
        let batch = self.batches;
        let tenants = PyList::empty(py);
        let n_classes = self.n_classes();
        let mut kept = keep.then(|| Cands { n_classes, cands: Vec::new(), marks: Vec::new() });
        for ev in events.iter() {
            let ev = Event::read(&ev)?;
            let tenant = ev.tenant.to_str()?;
            let s = self.step_one(tenant, ev.key.to_str()?, ev.ts, ev.op.to_str()?, ev.size);
            cats.extend_from_slice(&s.cats);
            masks.extend_from_slice(&[s.correct, s.present]);
            let st = self.tenants.get_mut(tenant).expect("just stepped");
            if st.batch == batch {
                st.run += 1;
            } else {
                (st.batch, st.group, st.run) = (batch, tenants.len() as i64, 0);
                tenants.append(&ev.tenant)?;
            }
            group.push(st.group);
            pos.push(st.run);
            if let Some(c) = kept.as_mut() {
                c.cands.extend(st.cands.iter().cloned());
                if marks_k > 0 {
                    let key = st.key.as_ref().expect("just stepped");
                    c.marks.push(st.table.successors(key).map_or_else(Vec::new, |succ| {
                        table::top(succ, marks_k).into_iter().map(|e| e.0.clone()).collect()
                    }));
                }
            }
        }
        Ok((i64_bytes(py, &cats), i64_bytes(py, &masks), i64_bytes(py, &group),
            i64_bytes(py, &pos), tenants, kept))
    }

    /// A stream from an empty state (training): (cats, correct, present, target,
    /// tenant index) as int64 buffers, and the candidates of steps from `keep_from`;
    /// `lead` (stream requests) and `horizon` (tenant requests) shape the target.
    /// `target[i]` is step i's `Horizon` mask (ahead.rs; with lead 0 and horizon 1 the
    /// `correct` mask of the tenant's next step); -1 where its horizon never closed.
    #[allow(clippy::type_complexity)]
    #[pyo3(signature = (events, keep_from, lead=0, horizon=1))]
    fn encode<'py>(&mut self, py: Python<'py>, events: &Bound<'py, PyAny>, keep_from: usize,
                   lead: usize, horizon: usize) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>,
                                  Bound<'py, PyByteArray>, Bound<'py, PyByteArray>,
                                  Bound<'py, PyByteArray>, Cands)> {
        let n = events.len()?;
        let mut cats = Vec::with_capacity(n * N_CATS);
        let (mut correct, mut present) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut target, mut tenant_ix) = (vec![-1i64; n], Vec::with_capacity(n));
        if horizon < 1 {
            return Err(PyValueError::new_err("horizon: at least 1 request"));
        }
        let mut ids: FxHashMap<Box<str>, (i64, Horizon)> = FxHashMap::default();
        let mut kept = Cands { n_classes: self.n_classes(), cands: Vec::new(), marks: Vec::new() };
        for (i, ev) in events.try_iter()?.enumerate() {
            let ev = ev?;
            let ev = Event::read(&ev)?;
            let tenant = ev.tenant.to_str()?;
            let s = self.step_one(tenant, ev.key.to_str()?, ev.ts, ev.op.to_str()?, ev.size);
            cats.extend_from_slice(&s.cats);
            correct.push(s.correct);
            present.push(s.present);
            let next_id = ids.len() as i64;
            let entry = ids.entry(tenant.into()).or_insert_with(|| (next_id, Horizon::default()));
            let st = &self.tenants[tenant];
            let key = st.key.as_ref().expect("just stepped");
            entry.1.request(i, key, &st.cands, lead, horizon, |j, mask| target[j] = mask);
            tenant_ix.push(entry.0);
            if i >= keep_from {
                kept.cands.extend(self.tenants[tenant].cands.iter().cloned());
            }
        }
        Ok((i64_bytes(py, &cats), i64_bytes(py, &correct), i64_bytes(py, &present),
            i64_bytes(py, &target), i64_bytes(py, &tenant_ix), kept))
    }

    /// Keep each tenant's newest class probabilities (rows of float32, one per tenant).
    fn set_probs(&mut self, tenants: &Bound<'_, PyList>, probs: &[u8]) -> PyResult<()> {
        let row_bytes = 4 * self.n_classes();
        if probs.len() != tenants.len() * row_bytes {
            return Err(PyValueError::new_err("one row of n_classes float32 per tenant"));
        }
        for (t, row) in tenants.iter().zip(probs.chunks_exact(row_bytes)) {
            let t = t.downcast_into::<PyString>()?;
            if let Some(st) = self.tenants.get_mut(t.to_str()?) {
                st.probs.clear();
                st.probs.extend(row.chunks_exact(4)
                    .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])));
            }
        }
        Ok(())
    }

    /// Per tenant: up to `k` warms `(key str, score capped at 1)` at or above
    /// `threshold` from its newest candidates and probabilities (as `make(key, score)`
    /// when given), or None when it has no probabilities yet.
    #[pyo3(signature = (tenants, k, threshold, make=None))]
    fn choose<'py>(&self, py: Python<'py>, tenants: &Bound<'py, PyList>, k: usize,
                   threshold: f64, make: Option<&Bound<'py, PyAny>>
                   ) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for t in tenants.iter() {
            let t = t.downcast_into::<PyString>()?;
            match self.tenants.get(t.to_str()?).filter(|st| !st.probs.is_empty()) {
                Some(st) => out.append(picks_to_py(
                    py, &pooled_top(&st.probs, &st.cands, k), true, true, Some(threshold), false,
                    make)?)?,
                None => out.append(py.None())?,
            }
        }
        Ok(out)
    }

    /// The `k` most frequent successors of `key` (a parsed key) seen for `tenant`.
    fn top_successors(&self, py: Python<'_>, tenant: &str, key: &Bound<'_, PyAny>, k: usize
                      ) -> PyResult<Vec<PyObject>> {
        let key = Key::from_object(key)?;
        let Some(succ) = self.tenants.get(tenant).and_then(|st| st.table.successors(&key)) else {
            return Ok(Vec::new());
        };
        table::top(succ, k).into_iter().map(|e| e.0.to_object(py)).collect()
    }

    /// Add successor counts learnt elsewhere: rows `(key, [(successor, count), ...])`,
    /// oldest first; the newest rows and each row's most frequent successors are kept.
    fn seed(&mut self, tenant: &str, rows: Vec<(String, Vec<(String, i64)>)>) {
        let (max_keys, max_succ) = (self.max_keys, self.max_successors);
        self.state(tenant);
        let skip = rows.len().saturating_sub(max_keys);
        for (prev, counts) in rows.into_iter().skip(skip) {
            let prev = Key::parse(&prev);
            let st = self.tenants.get_mut(tenant).expect("made above; fit keeps tenants");
            let pool = &mut self.pool;
            let (mut merged, mut total) = st.table.take(pool, &prev)
                .map_or((Vec::new(), 0), |r| (r.succ, r.total));
            for (key, n) in counts {
                let key = Key::parse(&key);
                total += n;
                match merged.iter_mut().find(|e| e.0 == key) {
                    Some(e) => e.1 += n,
                    None => merged.push((key, n)),
                }
            }
            merged.sort_by_key(|e| std::cmp::Reverse(e.1)); // stable
            merged.truncate(max_succ);
            st.table.put(pool, prev, merged, total, max_keys);
            self.pool.fit(&mut self.tenants);
        }
    }

    /// The tenant's newest candidates (None where absent; empty before its first step).
    fn newest_cands(&self, py: Python<'_>, tenant: &str) -> PyResult<Vec<PyObject>> {
        self.cands_of(tenant).iter()
            .map(|c| match c { Some(k) => k.to_object(py), None => Ok(py.None()) })
            .collect()
    }
}

/// The candidates of many steps (one list of `n_classes` per step).
#[pyclass(module = "stream_warmer_native", sequence)]
struct Cands {
    n_classes: usize,
    cands: Vec<Option<Key>>,
    marks: Vec<Vec<Key>>,
}

#[pymethods]
impl Cands {
    /// From Python lists of keys (int, str or None), one list per step.
    #[staticmethod]
    fn from_lists(rows: &Bound<'_, PyAny>, n_classes: usize) -> PyResult<Cands> {
        let mut cands = Vec::new();
        for row in rows.try_iter()? {
            let row = row?;
            let mut n = 0;
            for c in row.try_iter()? {
                let c = c?;
                cands.push(if c.is_none() { None } else { Some(Key::from_object(&c)?) });
                n += 1;
            }
            if n > n_classes {
                return Err(PyValueError::new_err("a row has more candidates than classes"));
            }
            cands.resize(cands.len() + n_classes - n, None);
        }
        Ok(Cands { n_classes, cands, marks: Vec::new() })
    }

    fn __len__(&self) -> usize {
        self.cands.len() / self.n_classes
    }

    fn __getitem__(&self, py: Python<'_>, i: isize) -> PyResult<Vec<PyObject>> {
        let n = self.__len__() as isize;
        let i = if i < 0 { i + n } else { i };
        if i < 0 || i >= n {
            return Err(PyIndexError::new_err("step index out of range"));
        }
        let row = &self.cands[i as usize * self.n_classes..(i as usize + 1) * self.n_classes];
        row.iter().map(|c| match c { Some(k) => k.to_object(py), None => Ok(py.None()) }).collect()
    }

    /// Step `i`'s Markov shadow (`marks_k` top successors) as strings.
    fn marks(&self, py: Python<'_>, i: usize) -> PyResult<Vec<PyObject>> {
        let row = self.marks.get(i).ok_or_else(|| PyIndexError::new_err("no marks kept"))?;
        Ok(row.iter().map(|k| k.to_pystr(py)).collect())
    }

    /// Per step: up to `k` `(key, pooled probability)` best first from `probs`
    /// (N rows of `n_classes` float32). Keys as str with `as_str` (scores then capped
    /// at 1, and `threshold` applies to the capped score), else as the parsed key.
    /// With `steps`, only those steps, in that order: `probs` then holds their rows.
    #[pyo3(signature = (probs, k, as_str=false, threshold=None, make=None, steps=None))]
    #[allow(clippy::too_many_arguments)]
    fn choose<'py>(&self, py: Python<'py>, probs: &[u8], k: usize, as_str: bool,
                   threshold: Option<f64>, make: Option<&Bound<'py, PyAny>>,
                   steps: Option<Vec<usize>>) -> PyResult<Bound<'py, PyList>> {
        let rows = f32_rows(probs, self.n_classes)?;
        let n_rows = rows.len() / self.n_classes;
        let n_steps = self.__len__();
        if let Some(steps) = &steps {
            if steps.len() != n_rows || steps.iter().any(|&i| i >= n_steps) {
                return Err(PyValueError::new_err("one row of probabilities per step asked, \
                                                  each step in range"));
            }
        } else if n_rows != n_steps {
            return Err(PyValueError::new_err("one row of probabilities per step"));
        }
        let out = PyList::empty(py);
        for (j, row) in rows.chunks_exact(self.n_classes).enumerate() {
            let i = steps.as_ref().map_or(j, |s| s[j]);
            let cands = &self.cands[i * self.n_classes..(i + 1) * self.n_classes];
            out.append(picks_to_py(py, &pooled_top(row, cands, k), as_str, as_str, threshold, true,
                                   make)?)?;
        }
        Ok(out)
    }
}

#[pymodule]
fn stream_warmer_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Tracker>()?;
    m.add_class::<Cands>()?;
    m.add_class::<markov::Markov>()?;
    m.add_class::<slots::Slots>()?;
    m.add("TABLE_ROW_BYTES", table::ROW_BYTES)?;
    m.add("TABLE_SUCC_BYTES", table::SUCC_BYTES)?;
    Ok(())
}
