//! Inclusion and consistency proofs, RFC 9162 sections 2.1.3 and 2.1.4.

use serde::{Deserialize, Serialize};

use crate::hash::{Hash, node_hash};
use crate::tree::{NodeSource, range_root, split};

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The size.
        size: u64,
    },
    /// The sizes are not `0 < first < second`.
    #[error("consistency needs 0 < first < second, got {first} and {second}")]
    BadSizes {
        /// The first size.
        first: u64,
        /// The second size.
        second: u64,
    },
    /// The path has the wrong number of hashes for these sizes.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The recomputed root differs from the expected one.
    #[error("root mismatch: expected {expected}, got {got}")]
    RootMismatch {
        /// The root the proof should lead to.
        expected: Hash,
        /// The root it leads to.
        got: Hash,
    },
}

/// Proof that a leaf is at `index` in the tree of `size` leaves (RFC 9162 section 2.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf's index.
    pub index: u64,
    /// The tree size.
    pub size: u64,
    /// The audit path, bottom up.
    pub path: Vec<Hash>,
}

/// Proof that the tree of `second` leaves extends the tree of `first` (RFC 9162 section 2.1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The smaller size.
    pub first: u64,
    /// The larger size.
    pub second: u64,
    /// The consistency path.
    pub path: Vec<Hash>,
}

impl InclusionProof {
    /// PATH(index, D[0:size]) from stored nodes, `index < size`.
    pub fn generate<S: NodeSource>(src: &S, index: u64, size: u64) -> Result<Self, S::Error> {
        let mut path = Vec::new();
        // Iterative form of the RFC's recursion, collecting top-down then reversing.
        let (mut m, mut start, mut end) = (index, 0u64, size);
        while end - start > 1 {
            let k = split(end - start);
            if m < k {
                path.push(range_root(src, start + k, end)?);
                end = start + k;
            } else {
                path.push(range_root(src, start, start + k)?);
                start += k;
                m -= k;
            }
        }
        path.reverse();
        Ok(Self { index, size, path })
    }

    /// The root this proof leads to from `leaf_hash` (RFC 9162 section 2.1.3.2).
    pub fn root(&self, leaf_hash: &Hash) -> Result<Hash, ProofError> {
        if self.index >= self.size {
            return Err(ProofError::IndexOutOfRange {
                index: self.index,
                size: self.size,
            });
        }
        let (mut fn_, mut sn) = (self.index, self.size - 1);
        let mut r = *leaf_hash;
        for p in &self.path {
            if sn == 0 {
                return Err(ProofError::WrongLength);
            }
            if fn_ & 1 == 1 || fn_ == sn {
                r = node_hash(p, &r);
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        if sn != 0 {
            return Err(ProofError::WrongLength);
        }
        Ok(r)
    }

    /// Checks that `leaf_hash` is at `index` in the tree with root `root`.
    pub fn verify(&self, leaf_hash: &Hash, root: &Hash) -> Result<(), ProofError> {
        let got = self.root(leaf_hash)?;
        if got != *root {
            return Err(ProofError::RootMismatch {
                expected: *root,
                got,
            });
        }
        Ok(())
    }
}

impl ConsistencyProof {
    /// PROOF(first, D[0:second]) from stored nodes, `0 < first < second`.
    pub fn generate<S: NodeSource>(src: &S, first: u64, second: u64) -> Result<Self, S::Error> {
        let mut path = Vec::new();
        let (mut m, mut start, mut end, mut whole) = (first, 0u64, second, true);
        loop {
            let n = end - start;
            if m == n {
                if !whole {
                    path.push(range_root(src, start, end)?);
                }
                break;
            }
            let k = split(n);
            if m <= k {
                path.push(range_root(src, start + k, end)?);
                end = start + k;
            } else {
                path.push(range_root(src, start, start + k)?);
                start += k;
                m -= k;
                whole = false;
            }
        }
        path.reverse();
        Ok(Self {
            first,
            second,
            path,
        })
    }

    /// Checks that `second_root` extends `first_root` (RFC 9162 section 2.1.4.2).
    pub fn verify(&self, first_root: &Hash, second_root: &Hash) -> Result<(), ProofError> {
        let (first, second) = (self.first, self.second);
        if first == 0 || first >= second {
            return Err(ProofError::BadSizes { first, second });
        }
        let mut path = self.path.iter();
        // A power-of-two first tree is itself a node of the second: the RFC prepends its root.
        let seed = if first.is_power_of_two() {
            *first_root
        } else {
            *path.next().ok_or(ProofError::WrongLength)?
        };
        let (mut fr, mut sr) = (seed, seed);
        let (mut fn_, mut sn) = (first - 1, second - 1);
        while fn_ & 1 == 1 {
            fn_ >>= 1;
            sn >>= 1;
        }
        for c in path {
            if sn == 0 {
                return Err(ProofError::WrongLength);
            }
            if fn_ & 1 == 1 || fn_ == sn {
                fr = node_hash(c, &fr);
                sr = node_hash(c, &sr);
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            } else {
                sr = node_hash(&sr, c);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        if sn != 0 {
            return Err(ProofError::WrongLength);
        }
        if fr != *first_root {
            return Err(ProofError::RootMismatch {
                expected: *first_root,
                got: fr,
            });
        }
        if sr != *second_root {
            return Err(ProofError::RootMismatch {
                expected: *second_root,
                got: sr,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::root_of;
    use crate::tree::tests::build;

    /// RFC 9162 PATH(m, D[n]), straight from the definition over a slice.
    fn path_ref(m: usize, d: &[Hash]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let k = split(n as u64) as usize;
        if m < k {
            let mut p = path_ref(m, &d[..k]);
            p.push(root_of(&d[k..]));
            p
        } else {
            let mut p = path_ref(m - k, &d[k..]);
            p.push(root_of(&d[..k]));
            p
        }
    }

    /// RFC 9162 SUBPROOF(m, D[n], b), straight from the definition.
    fn subproof_ref(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![root_of(d)] };
        }
        let k = split(n as u64) as usize;
        if m <= k {
            let mut p = subproof_ref(m, &d[..k], b);
            p.push(root_of(&d[k..]));
            p
        } else {
            let mut p = subproof_ref(m - k, &d[k..], false);
            p.push(root_of(&d[..k]));
            p
        }
    }

    /// A small deterministic generator (xorshift64*), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    fn corrupt(path: &[Hash], rng: &mut Rng) -> Vec<Vec<Hash>> {
        let mut out = Vec::new();
        if !path.is_empty() {
            let mut p = path.to_vec();
            let i = rng.below(p.len() as u64) as usize;
            p[i].0[rng.below(32) as usize] ^= 1 << rng.below(8);
            out.push(p);
            let mut p = path.to_vec();
            p.pop();
            out.push(p);
            if path.len() > 1 {
                let mut p = path.to_vec();
                p.swap(0, path.len() - 1);
                if p != path {
                    out.push(p);
                }
            }
        }
        let mut p = path.to_vec();
        p.push(Hash::digest(b"extra"));
        out.push(p);
        out
    }

    #[test]
    fn inclusion_proofs_match_the_rfc_definition_at_every_index() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (_, nodes, all) = build(2100);
        let mut sizes: Vec<u64> = (1..=70).collect();
        sizes.extend((0..30).map(|_| 1 + rng.below(2100)));
        sizes.extend([1024, 1025, 2047, 2048, 2049, 2100]);
        for size in sizes {
            let d = &all[..size as usize];
            let root = root_of(d);
            for index in 0..size {
                let proof = InclusionProof::generate(&nodes, index, size).expect("nodes");
                // The reference recomputes whole subtrees: compare it on small trees and a
                // sample of indexes of large ones; every index is verified either way.
                if size <= 70 || index % 97 == 0 || index == size - 1 {
                    assert_eq!(
                        proof.path,
                        path_ref(index as usize, d),
                        "size {size} index {index}"
                    );
                }
                proof.verify(&d[index as usize], &root).expect("verifies");
                let other = &d[((index + 1) % size) as usize];
                if size > 1 {
                    assert!(proof.verify(other, &root).is_err(), "wrong leaf passes");
                }
                for bad in corrupt(&proof.path, &mut rng) {
                    let p = InclusionProof {
                        path: bad,
                        ..proof.clone()
                    };
                    assert!(
                        p.verify(&d[index as usize], &root).is_err(),
                        "corrupt passes"
                    );
                }
                if size > 1 {
                    let p = InclusionProof {
                        index: (index + 1) % size,
                        ..proof.clone()
                    };
                    let right = InclusionProof::generate(&nodes, p.index, size).expect("nodes");
                    if p.path != right.path {
                        assert!(
                            p.verify(&d[index as usize], &root).is_err(),
                            "wrong index passes"
                        );
                    }
                }
            }
            let p = InclusionProof {
                index: size,
                size,
                path: vec![],
            };
            assert!(matches!(
                p.verify(&d[0], &root),
                Err(ProofError::IndexOutOfRange { .. })
            ));
        }
    }

    #[test]
    fn consistency_proofs_match_the_rfc_definition_for_many_size_pairs() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        let (_, nodes, all) = build(3000);
        let mut pairs: Vec<(u64, u64)> = Vec::new();
        for second in 2..=64u64 {
            for first in 1..second {
                pairs.push((first, second));
            }
        }
        for _ in 0..400 {
            let second = 2 + rng.below(2999);
            pairs.push((1 + rng.below(second - 1), second));
        }
        pairs.extend([
            (1024, 2048),
            (1023, 1024),
            (1, 3000),
            (2999, 3000),
            (2048, 3000),
        ]);
        for (first, second) in pairs {
            let r1 = root_of(&all[..first as usize]);
            let r2 = root_of(&all[..second as usize]);
            let proof = ConsistencyProof::generate(&nodes, first, second).expect("nodes");
            assert_eq!(
                proof.path,
                subproof_ref(first as usize, &all[..second as usize], true),
                "{first} -> {second}"
            );
            proof.verify(&r1, &r2).expect("verifies");
            assert!(
                proof.verify(&r2, &r2).is_err() || r1 == r2,
                "wrong first root passes"
            );
            let other = Hash::digest(b"forged root");
            assert!(
                proof.verify(&r1, &other).is_err(),
                "forged second root passes"
            );
            for bad in corrupt(&proof.path, &mut rng) {
                let p = ConsistencyProof {
                    path: bad,
                    ..proof.clone()
                };
                assert!(
                    p.verify(&r1, &r2).is_err(),
                    "corrupt passes {first}->{second}"
                );
            }
        }
        let p = ConsistencyProof {
            first: 5,
            second: 5,
            path: vec![],
        };
        assert!(matches!(
            p.verify(&all[0], &all[0]),
            Err(ProofError::BadSizes { .. })
        ));
    }
}
