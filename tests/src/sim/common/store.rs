//! An insertion-ordered table of resources keyed by id.

use std::collections::{BTreeMap, HashMap};

/// Rows in creation order with an id index.
#[derive(Debug)]
pub(crate) struct Table<T> {
    seq: u64,
    rows: BTreeMap<u64, (String, T)>,
    ids: HashMap<String, u64>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            seq: 0,
            rows: BTreeMap::new(),
            ids: HashMap::new(),
        }
    }
}

impl<T> Table<T> {
    pub(crate) fn insert(&mut self, id: String, row: T) {
        if let Some(old) = self.ids.get(&id) {
            self.rows.remove(old);
        }
        self.seq += 1;
        self.ids.insert(id.clone(), self.seq);
        self.rows.insert(self.seq, (id, row));
    }

    pub(crate) fn get(&self, id: &str) -> Option<&T> {
        self.ids.get(id).and_then(|s| self.rows.get(s)).map(|(_, r)| r)
    }

    pub(crate) fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        let s = *self.ids.get(id)?;
        self.rows.get_mut(&s).map(|(_, r)| r)
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<T> {
        let s = self.ids.remove(id)?;
        self.rows.remove(&s).map(|(_, r)| r)
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Rows in creation order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.rows.values().map(|(_, r)| r)
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.rows.values_mut().map(|(_, r)| r)
    }
}
