//! Index-based paging (RFC 7644 §3.4.2.4) as the systems implement it.

use std::ops::Range;

/// The 1-based `startIndex` (values below 1 mean 1).
pub(crate) fn start_index(raw: Option<i64>) -> usize {
    raw.unwrap_or(1).max(1) as usize
}

/// The page size: `raw` or `default`, negative → 0, capped at `max`.
pub(crate) fn count(raw: Option<i64>, default: usize, max: usize) -> usize {
    (raw.unwrap_or(default as i64).max(0) as usize).min(max)
}

/// Which positions of `total` items a page covers.
pub(crate) fn window(total: usize, start_index: usize, count: usize) -> Range<usize> {
    provisio_scim::list::window(total, start_index as u64, count as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        assert_eq!(window(10, 1, 3), 0..3);
        assert_eq!(window(10, 9, 3), 8..10);
        assert_eq!(window(10, 11, 3), 10..10);
        assert_eq!(window(10, 1, 0), 0..0);
        assert_eq!(start_index(Some(-4)), 1);
        assert_eq!(count(Some(-1), 100, 500), 0);
        assert_eq!(count(Some(10_000), 100, 500), 500);
        assert_eq!(count(None, 100, 500), 100);
    }
}
