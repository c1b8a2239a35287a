//! The Merkle tree of the log, exactly as RFC 9162 section 2.1 (hashing identical to RFC 6962):
//! tree heads, the append frontier, and subtree hashes from stored nodes.
//!
//! Nodes are addressed by `(level, index)`: the node at level `l`, index `i` is the root of the
//! perfect subtree over leaves `[i * 2^l, (i + 1) * 2^l)`. Level 0 holds the leaf hashes. Only
//! complete (perfect) subtrees are ever stored, so a stored node never changes as the log grows.

use serde::{Deserialize, Serialize};

use crate::hash::{Hash, node_hash};

/// A tree head: the size of the log and the root of its Merkle tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TreeHead {
    /// Number of leaves.
    pub size: u64,
    /// RFC 9162 Merkle tree hash of those leaves (SHA-256 of the empty string for size 0).
    pub root: Hash,
}

/// The largest power of two strictly less than `n` (RFC 9162's `k`), for `n > 1`.
pub(crate) fn split(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

/// RFC 9162 MTH over a list of leaf hashes, computed directly from the definition. For tests
/// and small inputs; the log uses [`Frontier`] and stored nodes instead.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::digest(b""),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// Where stored nodes come from: the hash of the perfect subtree at `(level, index)`.
pub trait NodeSource {
    /// Why a node could not be read.
    type Error;
    /// The stored node at `(level, index)`; level 0 is the leaf hash at `index`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// The root of leaves `[start, end)` from stored nodes, `start` a multiple of the largest power
/// of two not above `end - start` (every range the RFC's recursion visits is).
pub fn range_root<S: NodeSource>(src: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let n = end - start;
    if n == 0 {
        return Ok(Hash::digest(b""));
    }
    if n.is_power_of_two() {
        let level = n.trailing_zeros();
        return src.node(level, start >> level);
    }
    let k = split(n);
    let left = range_root(src, start, start + k)?;
    let right = range_root(src, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The right edge of the tree: one root per perfect subtree of the current size (one for each
/// set bit, largest first). Appending a leaf completes O(1) amortized new nodes, and the root is
/// a fold of at most 64 hashes, so neither grows with the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    peaks: Vec<Hash>,
}

/// A node completed by an append, to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedNode {
    /// Level (1 or more: leaves are stored with their records).
    pub level: u32,
    /// Index within the level.
    pub index: u64,
    /// The subtree root.
    pub hash: Hash,
}

impl Frontier {
    /// The frontier of an empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the frontier of a log of `size` leaves from stored nodes.
    pub fn load<S: NodeSource>(src: &S, size: u64) -> Result<Self, S::Error> {
        let mut peaks = Vec::new();
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size & (1 << level) != 0 {
                peaks.push(src.node(level, start >> level)?);
                start += 1 << level;
            }
        }
        Ok(Self { size, peaks })
    }

    /// The frontier of a log of `size` leaves whose perfect subtrees have roots `peaks`
    /// (largest first), as [`Frontier::peaks`] gave them; `None` if their number does not fit
    /// `size` (one per set bit).
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Option<Self> {
        (peaks.len() == size.count_ones() as usize).then_some(Self { size, peaks })
    }

    /// The roots of the perfect subtrees, largest first: with the size, all a writer needs to
    /// extend the tree, so a database can keep it in one row.
    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns the interior nodes it completed, lowest first.
    pub fn push(&mut self, leaf: Hash) -> Vec<CompletedNode> {
        let mut completed = Vec::new();
        let mut hash = leaf;
        let mut level = 0u32;
        let index = self.size;
        // Each trailing one bit of the old size is a peak of equal height that merges.
        while self.size & (1 << level) != 0 {
            let left = self.peaks.pop().unwrap_or_default();
            hash = node_hash(&left, &hash);
            level += 1;
            completed.push(CompletedNode {
                level,
                index: index >> level,
                hash,
            });
        }
        self.peaks.push(hash);
        self.size += 1;
        completed
    }

    /// The current tree head.
    pub fn head(&self) -> TreeHead {
        let root = match self.peaks.split_last() {
            None => Hash::digest(b""),
            Some((last, rest)) => rest.iter().rev().fold(*last, |acc, p| node_hash(p, &acc)),
        };
        TreeHead {
            size: self.size,
            root,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;

    use super::*;
    use crate::hash::leaf_hash;

    /// An in-memory node store filled by a frontier, for tests.
    #[derive(Default)]
    pub(crate) struct Nodes(pub HashMap<(u32, u64), Hash>);

    impl NodeSource for Nodes {
        type Error = Infallible;
        fn node(&self, level: u32, index: u64) -> Result<Hash, Infallible> {
            Ok(*self.0.get(&(level, index)).expect("node stored"))
        }
    }

    pub(crate) fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    pub(crate) fn build(n: u64) -> (Frontier, Nodes, Vec<Hash>) {
        let leaves = leaves(n);
        let mut f = Frontier::new();
        let mut nodes = Nodes::default();
        for (i, l) in leaves.iter().enumerate() {
            nodes.0.insert((0, i as u64), *l);
            for c in f.push(*l) {
                nodes.0.insert((c.level, c.index), c.hash);
            }
        }
        (f, nodes, leaves)
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            Frontier::new().head().root.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn frontier_and_stored_nodes_agree_with_the_definition_at_every_size() {
        let all = leaves(600);
        let mut f = Frontier::new();
        let mut nodes = Nodes::default();
        for (i, l) in all.iter().enumerate() {
            nodes.0.insert((0, i as u64), *l);
            for c in f.push(*l) {
                nodes.0.insert((c.level, c.index), c.hash);
            }
            let n = i as u64 + 1;
            let expected = root_of(&all[..=i]);
            assert_eq!(
                f.head(),
                TreeHead {
                    size: n,
                    root: expected
                },
                "size {n}"
            );
            assert_eq!(range_root(&nodes, 0, n).expect("nodes"), expected);
            assert_eq!(Frontier::load(&nodes, n).expect("load"), f, "reload at {n}");
            let kept = Frontier::from_peaks(n, f.peaks().to_vec());
            assert_eq!(kept.as_ref(), Some(&f), "from its peaks at {n}");
            assert_eq!(
                Frontier::from_peaks(n + 1, f.peaks().to_vec()).is_some(),
                (n + 1).count_ones() == n.count_ones()
            );
        }
        // Every stored node is the root of the leaves it covers.
        for (&(level, index), hash) in &nodes.0 {
            let start = (index << level) as usize;
            assert_eq!(*hash, root_of(&all[start..start + (1 << level)]));
        }
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        assert_eq!(split(2), 1);
        assert_eq!(split(3), 2);
        assert_eq!(split(4), 2);
        assert_eq!(split(5), 4);
        assert_eq!(split(1 << 40), 1 << 39);
        assert_eq!(split((1 << 40) + 1), 1 << 40);
    }
}
