//! Which tenant owns which row of the recurrent state tensors.
//!
//! `Slots` is stream_warmer/model/slots.py's table in native code: a tenant gets a slot
//! the first time the model advances it; a released slot is reused (last released
//! first); when every slot is taken the least recently used tenant loses its slot.
//! Recency is an intrusive doubly linked list over slot indices, so a touch and an
//! eviction are O(1) and a batch of B tenants costs B hash lookups.

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyList, PyString};

use crate::i64_bytes;
use rustc_hash::FxHashMap;

const NIL: u32 = u32::MAX;

/// Tenant -> slot, least recently used first out (module docs).
#[pyclass(module = "stream_warmer_native")]
pub struct Slots {
    capacity: usize,
    of: FxHashMap<Box<str>, u32>,
    owner: Vec<Option<Box<str>>>, // slot -> tenant
    prev: Vec<u32>,
    next: Vec<u32>,
    head: u32, // least recent
    tail: u32, // most recent
    free: Vec<u32>,
}

impl Slots {
    fn unlink(&mut self, s: u32) {
        let (p, n) = (self.prev[s as usize], self.next[s as usize]);
        if p == NIL { self.head = n } else { self.next[p as usize] = n }
        if n == NIL { self.tail = p } else { self.prev[n as usize] = p }
    }

    fn push_back(&mut self, s: u32) {
        self.prev[s as usize] = self.tail;
        self.next[s as usize] = NIL;
        if self.tail == NIL { self.head = s } else { self.next[self.tail as usize] = s }
        self.tail = s;
    }

    /// A slot for a tenant that has none; the evicted tenant, if any, goes to `evicted`.
    fn assign(&mut self, tenant: &str, evicted: &mut Vec<Box<str>>) -> u32 {
        let slot = if let Some(s) = self.free.pop() {
            s
        } else if self.of.len() < self.capacity {
            self.of.len() as u32 // slots in use + free ones are always 0..n-1
        } else {
            let s = self.head;
            self.unlink(s);
            let old = self.owner[s as usize].take().expect("a used slot has an owner");
            self.of.remove(&old);
            evicted.push(old);
            s
        };
        self.of.insert(tenant.into(), slot);
        self.owner[slot as usize] = Some(tenant.into());
        self.push_back(slot);
        slot
    }
}

#[pymethods]
impl Slots {
    #[new]
    fn new(capacity: usize) -> PyResult<Self> {
        if capacity == 0 || capacity >= NIL as usize {
            return Err(pyo3::exceptions::PyValueError::new_err("slot capacity: 1 .. 2**32-2"));
        }
        Ok(Slots { capacity, of: FxHashMap::default(), owner: vec![None; capacity],
                   prev: vec![NIL; capacity], next: vec![NIL; capacity], head: NIL, tail: NIL,
                   free: Vec::new() })
    }

    fn __len__(&self) -> usize {
        self.of.len()
    }

    fn __contains__(&self, tenant: &str) -> bool {
        self.of.contains_key(tenant)
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.capacity
    }

    /// The slot of each tenant (at most `capacity` distinct), assigning new ones:
    /// (slots as int64 bytes, newly assigned slots as int64 bytes, evicted tenants in
    /// eviction order).
    #[allow(clippy::type_complexity)]
    fn ids<'py>(&mut self, py: Python<'py>, tenants: &Bound<'py, PyList>
                ) -> PyResult<(Bound<'py, PyByteArray>, Bound<'py, PyByteArray>, Vec<String>)> {
        let (mut out, mut fresh, mut evicted) = (Vec::with_capacity(tenants.len()), Vec::new(),
                                                 Vec::new());
        for t in tenants.iter() {
            let t = t.downcast_into::<PyString>()?;
            let t = t.to_str()?;
            let slot = match self.of.get(t) {
                Some(&s) => {
                    self.unlink(s);
                    self.push_back(s);
                    s
                }
                None => {
                    let s = self.assign(t, &mut evicted);
                    fresh.push(s);
                    s
                }
            };
            out.push(slot);
        }
        let wide = |v: &[u32]| v.iter().map(|&x| i64::from(x)).collect::<Vec<i64>>();
        Ok((i64_bytes(py, &wide(&out)), i64_bytes(py, &wide(&fresh)),
            evicted.into_iter().map(String::from).collect()))
    }

    /// The tenant is gone: its slot may be given to another.
    fn release(&mut self, tenant: &str) {
        if let Some(s) = self.of.remove(tenant) {
            self.unlink(s);
            self.owner[s as usize] = None;
            self.free.push(s);
        }
    }

    /// Every tenant loses its slot.
    fn clear(&mut self) {
        self.of.clear();
        self.owner.iter_mut().for_each(|o| *o = None);
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
    }

    /// Bytes held by the table (per-slot arrays and the tenant map; an estimate).
    fn memory_bytes(&self) -> usize {
        let per_slot = std::mem::size_of::<Option<Box<str>>>() + 8;
        let names: usize = self.of.keys().map(|t| 2 * t.len()).sum();
        self.capacity * per_slot
            + self.of.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1)
            + self.free.capacity() * 4 + names
    }
}
