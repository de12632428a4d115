//! An insertion-ordered table of resources keyed by id.

use std::collections::{BTreeMap, HashMap};

/// Rows in creation order with an id index, and a positional index so that a page deep into a large
/// table is found in O(log n) instead of by walking every row before it.
#[derive(Debug)]
pub(crate) struct Table<T> {
    seq: u64,
    rows: BTreeMap<u64, (String, T)>,
    ids: HashMap<String, u64>,
    positions: Positions,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            seq: 0,
            rows: BTreeMap::new(),
            ids: HashMap::new(),
            positions: Positions::default(),
        }
    }
}

impl<T> Table<T> {
    pub(crate) fn insert(&mut self, id: String, row: T) {
        if let Some(old) = self.ids.get(&id) {
            self.rows.remove(old);
            self.positions.remove(*old);
        }
        self.seq += 1;
        self.positions.push(self.seq);
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
        self.positions.remove(s);
        self.rows.remove(&s).map(|(_, r)| r)
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Where a row stands in creation order (larger = created later); `None` when there is no such row.
    pub(crate) fn order_of(&self, id: &str) -> Option<u64> {
        self.ids.get(id).copied()
    }

    /// Rows in creation order.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.rows.values().map(|(_, r)| r)
    }

    /// Rows in creation order from the 0-based position `skip` on: `iter().skip(skip)` without walking
    /// the skipped rows.
    pub(crate) fn iter_from(&self, skip: usize) -> impl Iterator<Item = &T> {
        let from = self.positions.select(skip).unwrap_or(u64::MAX);
        self.rows.range(from..).map(|(_, (_, r))| r)
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.rows.values_mut().map(|(_, r)| r)
    }
}

/// A Fenwick tree over sequence numbers 1..=n holding 1 for each live row: the k-th live row in
/// O(log n), appends and removals in O(log n).
#[derive(Debug, Default)]
struct Positions {
    /// 1-based; `tree[i - 1]` sums the live flags of (i - lowbit(i), i].
    tree: Vec<u32>,
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl Positions {
    fn prefix(&self, mut i: usize) -> u32 {
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i - 1];
            i -= lowbit(i);
        }
        sum
    }

    /// Appends sequence number `seq` as live; sequence numbers come in increasing order, gaps allowed.
    fn push(&mut self, seq: u64) {
        let seq = seq as usize;
        while self.tree.len() < seq {
            let i = self.tree.len() + 1;
            // Node i covers (i - lowbit(i), i]: the live flags already recorded there, plus its own.
            let covered = self.prefix(i - 1) - self.prefix(i - lowbit(i));
            self.tree.push(covered + u32::from(i == seq));
        }
    }

    fn remove(&mut self, seq: u64) {
        let mut i = seq as usize;
        while i > 0 && i <= self.tree.len() {
            self.tree[i - 1] -= 1;
            i += lowbit(i);
        }
    }

    /// The sequence number of the live row at 0-based position `k`.
    fn select(&self, k: usize) -> Option<u64> {
        let n = self.tree.len();
        let mut remaining = u32::try_from(k).ok()?.checked_add(1)?;
        let mut pos = 0;
        let mut step = if n == 0 {
            0
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        while step > 0 {
            if pos + step <= n && self.tree[pos + step - 1] < remaining {
                pos += step;
                remaining -= self.tree[pos - 1];
            }
            step >>= 1;
        }
        (pos < n).then_some(pos as u64 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_from_a_position_match_skip() {
        let mut t: Table<u32> = Table::default();
        for i in 0..200u32 {
            t.insert(format!("id{i}"), i);
        }
        // Holes: removals and re-inserts of an existing id (moves it to the end).
        for i in (0..200u32).step_by(7) {
            t.remove(&format!("id{i}"));
        }
        t.insert("id3".into(), 1003);
        t.insert("id50".into(), 1050);
        t.insert("new".into(), 2000);
        for skip in 0..t.len() + 3 {
            let fast: Vec<u32> = t.iter_from(skip).take(5).copied().collect();
            let slow: Vec<u32> = t.iter().skip(skip).take(5).copied().collect();
            assert_eq!(fast, slow, "skip {skip}");
        }
        assert!(t.order_of("id3") > t.order_of("id4"));
        assert_eq!(t.order_of("id0"), None);
        let empty: Table<u32> = Table::default();
        assert_eq!(empty.iter_from(0).count(), 0);
    }
}
