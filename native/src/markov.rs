//! The `markov` baseline's per-tenant successor tables (stream_warmer/strategies/
//! baselines.py `Markov` wraps it): after key x, x's top successors, scored by their
//! count over every transition seen out of x. The tables are `table::Table`, the ones
//! the LSTM's tracker keeps, so the served baseline, the LSTM's rank candidates and its
//! budget's Markov shadow are one implementation. All tenants' tables share one byte
//! budget (`table::Pool`): the least recently used row of any tenant goes first.

use crate::table::{self, Owner, Pool, Table};
use crate::Key;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyTuple};
use rustc_hash::FxHashMap;

/// A table's rows as Python sees them: (key, [(successor, count), ...]).
type PyRows = Vec<(PyObject, Vec<(PyObject, i64)>)>;

struct Tenant {
    table: Table,
    last: Option<Key>,
}

impl Owner for Tenant {
    fn table_mut(&mut self, id: u64) -> Option<&mut Table> {
        (self.table.id() == id).then_some(&mut self.table)
    }

    fn tables(&self) -> Vec<&Table> {
        vec![&self.table]
    }
}

#[pyclass(module = "stream_warmer_native")]
pub(crate) struct Markov {
    max_keys: usize,
    max_succ: usize,
    tenants: FxHashMap<Box<str>, Tenant>,
    pool: Pool,
}

impl Markov {
    /// Learn `tenant`'s transition to `key`; returns the parsed key.
    fn observe_one(&mut self, tenant: &str, key: &str) -> Key {
        let (max_keys, max_succ) = (self.max_keys, self.max_succ);
        if !self.tenants.contains_key(tenant) {
            let table = self.pool.table(tenant);
            self.tenants.insert(tenant.into(), Tenant { table, last: None });
        }
        let t = self.tenants.get_mut(tenant).expect("just inserted");
        let key = Key::parse(key);
        if let Some(prev) = t.last.replace(key.clone()) {
            t.table.learn(&mut self.pool, prev, &key, max_keys, max_succ);
            self.pool.fit(&mut self.tenants);
        }
        key
    }

    /// `make(key, score)` (or the tuple) for the top `k` successors of `key`.
    fn top<'py>(&self, py: Python<'py>, tenant: &str, key: &Key, k: usize,
                make: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        let Some(row) = self.tenants.get(tenant).and_then(|t| t.table.row(key)) else {
            return Ok(out);
        };
        let total = row.total as f64;
        for (s, n) in table::top(&row.succ, k) {
            let score = *n as f64 / total;
            let item = match make {
                Some(f) => f.call1((s.to_pystr(py), score))?,
                None => PyTuple::new(py, [s.to_pystr(py), score.into_pyobject(py)?.into_any().unbind()])?
                    .into_any(),
            };
            out.append(item)?;
        }
        Ok(out)
    }
}

#[pymethods]
impl Markov {
    /// `table_bytes`: the byte budget of all tenants' tables together (table.rs).
    #[new]
    #[pyo3(signature = (max_keys, max_successors, table_bytes))]
    fn new(max_keys: usize, max_successors: usize, table_bytes: usize) -> PyResult<Self> {
        if max_keys < 1 || max_successors < 1 || table_bytes < 1 {
            return Err(PyValueError::new_err(format!(
                "max_keys={max_keys}, max_successors={max_successors} and \
                 table_bytes={table_bytes} must be >= 1")));
        }
        Ok(Markov { max_keys, max_succ: max_successors, tenants: FxHashMap::default(),
                    pool: Pool::new(table_bytes) })
    }

    fn __len__(&self) -> usize {
        self.tenants.len()
    }

    /// Record the transition from the tenant's previous key to `key`.
    fn observe(&mut self, tenant: &str, key: &str) {
        let _ = self.observe_one(tenant, key);
    }

    /// The top `k` successors of `key`: `make(key, score)` each, or (key, score).
    #[pyo3(signature = (tenant, key, k, make=None))]
    fn successors<'py>(&self, py: Python<'py>, tenant: &str, key: &str, k: usize,
                       make: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyList>> {
        self.top(py, tenant, &Key::parse(key), k, make)
    }

    /// Observe each of `events` (objects with `tenant` and `key`), then list its key's
    /// top `k` successors: one list per event, as `successors` makes them.
    #[pyo3(signature = (events, k, make=None))]
    fn stream<'py>(&mut self, py: Python<'py>, events: &Bound<'py, PyList>, k: usize,
                   make: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for ev in events.iter() {
            let tenant = ev.getattr(intern!(py, "tenant"))?.downcast_into::<PyString>()?;
            let key = ev.getattr(intern!(py, "key"))?.downcast_into::<PyString>()?;
            let tenant = tenant.to_str()?;
            let key = self.observe_one(tenant, key.to_str()?);
            out.append(self.top(py, tenant, &key, k, make)?)?;
        }
        Ok(out)
    }

    /// Drop a tenant's table and last key.
    fn forget(&mut self, tenant: &str) {
        if let Some(t) = self.tenants.remove(tenant) {
            self.pool.release(&t.tables());
        }
    }

    /// The tables' (bytes charged against the budget, rows, rows evicted by a bound so
    /// far, the budget in bytes).
    fn table_stats(&self) -> (usize, usize, u64, usize) {
        self.pool.stats()
    }

    /// The tenants with a table.
    fn tenants(&self) -> Vec<String> {
        self.tenants.keys().map(|t| t.to_string()).collect()
    }

    /// `tenant`'s rows, least recently used first: (key, [(successor, count), ...]),
    /// each row's successors in insertion order (what `Tracker.seed` takes).
    fn rows(&self, py: Python<'_>, tenant: &str) -> PyResult<PyRows> {
        let Some(t) = self.tenants.get(tenant) else {
            return Ok(Vec::new());
        };
        Ok(t.table.rows_lru_first().into_iter()
            .map(|(k, r)| (k.to_pystr(py), r.succ.iter().map(|(s, n)| (s.to_pystr(py), *n)).collect()))
            .collect())
    }

    /// Keys in `tenant`'s table.
    fn table_len(&self, tenant: &str) -> usize {
        self.tenants.get(tenant).map_or(0, |t| t.table.len())
    }

    /// Bytes held (an estimate from capacities and key lengths).
    fn memory_bytes(&self) -> usize {
        self.tenants.iter()
            .map(|(name, t)| name.len() + std::mem::size_of::<Tenant>() + t.table.bytes())
            .sum()
    }
}
