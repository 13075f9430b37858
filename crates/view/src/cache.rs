//! The encoded tiles the server made, least recently used dropped first,
//! within a byte budget.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// A byte-bounded LRU map of shared byte buffers.
pub struct Lru<K> {
    budget: usize,
    inner: Mutex<Inner<K>>,
}

struct Inner<K> {
    bytes: usize,
    tick: u64,
    map: HashMap<K, (Arc<Vec<u8>>, u64)>,
    order: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone> Lru<K> {
    /// A cache of at most `budget` bytes.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::new(Inner {
                bytes: 0,
                tick: 0,
                map: HashMap::new(),
                order: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key`, now the most recently used.
    pub fn get(&self, key: &K) -> Option<Arc<Vec<u8>>> {
        let mut g = self.lock();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        let (value, used) = inner.map.get_mut(key)?;
        let value = value.clone();
        let old = std::mem::replace(used, tick);
        inner.order.remove(&old);
        inner.order.insert(tick, key.clone());
        Some(value)
    }

    /// Keeps `value` under `key`, dropping the least recently used values
    /// past the budget (a value larger than the budget is not kept).
    pub fn put(&self, key: K, value: Arc<Vec<u8>>) {
        if value.len() > self.budget {
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, used)) = inner.map.insert(key.clone(), (value.clone(), tick)) {
            inner.bytes -= old.len();
            inner.order.remove(&used);
        }
        inner.order.insert(tick, key);
        inner.bytes += value.len();
        while inner.bytes > self.budget {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some((v, _)) = inner.map.remove(&oldest) {
                inner.bytes -= v.len();
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_budget_dropping_the_least_recently_used() {
        let lru = Lru::new(10);
        lru.put(1, Arc::new(vec![0; 4]));
        lru.put(2, Arc::new(vec![0; 4]));
        assert!(lru.get(&1).is_some()); // 2 is now the oldest
        lru.put(3, Arc::new(vec![0; 4]));
        assert!(lru.get(&2).is_none());
        assert!(lru.get(&1).is_some() && lru.get(&3).is_some());
        assert_eq!(lru.bytes(), 8);
        lru.put(4, Arc::new(vec![0; 11])); // larger than the budget
        assert!(lru.get(&4).is_none());
        lru.put(1, Arc::new(vec![0; 2])); // replaced, not added
        assert_eq!(lru.bytes(), 6);
    }
}
