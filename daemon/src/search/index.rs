//! The in-memory index: one [`VectorBlock`] per (project, kind), with the item id of each row,
//! so that a search limited to some projects or kinds reads exactly their blocks, and the
//! merge of the blocks' best hits into one ranking.
//!
//! Vectors are stored at unit length, so the blocks' dot product is the cosine similarity.
//! Every method is synchronous and may take a while on big blocks (or wait for the GPU):
//! callers run it on the blocking pool.

use std::collections::HashMap;

use nexus_models::search::{MAX_K, VectorBlock};
use nexus_models::{ComputeDevice, ModelError};

use crate::store::search::{Kind, Scope};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BlockKey {
    project_id: String,
    kind: Kind,
}

struct Block {
    vectors: VectorBlock,
    /// The item id of each row of `vectors`.
    items: Vec<String>,
}

/// One scored item, before or after the merge.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub kind: Kind,
    pub id: String,
    pub project_id: String,
    pub score: f32,
}

/// Every vector of the current model, by project and kind.
pub struct Index {
    device: ComputeDevice,
    dims: usize,
    blocks: HashMap<BlockKey, Block>,
    /// Where each item's vector is: its block's project and its row there.
    rows: HashMap<(Kind, String), (String, u32)>,
}

impl Index {
    pub fn new(device: ComputeDevice, dims: usize) -> Index {
        Index {
            device,
            dims,
            blocks: HashMap::new(),
            rows: HashMap::new(),
        }
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// How many vectors are held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn contains(&self, kind: Kind, id: &str) -> bool {
        self.rows.contains_key(&(kind, id.to_owned()))
    }

    /// Adds or replaces an item's vector, which must be `dims` long, finite and of unit length
    /// (see [`normalized`]).
    pub fn upsert(&mut self, kind: Kind, id: &str, project_id: &str, vector: &[f32]) {
        let item = (kind, id.to_owned());
        if let Some((project, row)) = self.rows.get(&item).cloned() {
            if project == project_id {
                let key = BlockKey {
                    project_id: project,
                    kind,
                };
                if let Some(block) = self.blocks.get_mut(&key) {
                    block.vectors.set(row, vector);
                    return;
                }
            }
            // The item moved to another project: it moves to that project's block.
            self.remove(kind, id);
        }

        let key = BlockKey {
            project_id: project_id.to_owned(),
            kind,
        };
        let (device, dims) = (&self.device, self.dims);
        let block = self.blocks.entry(key).or_insert_with(|| Block {
            vectors: VectorBlock::new(device, dims),
            items: Vec::new(),
        });
        let row = block.vectors.push(vector);
        debug_assert_eq!(row as usize, block.items.len());
        block.items.push(id.to_owned());
        self.rows.insert(item, (project_id.to_owned(), row));
    }

    /// Forgets an item's vector; returns whether it was held.
    pub fn remove(&mut self, kind: Kind, id: &str) -> bool {
        let Some((project_id, row)) = self.rows.remove(&(kind, id.to_owned())) else {
            return false;
        };
        let key = BlockKey { project_id, kind };
        let Some(block) = self.blocks.get_mut(&key) else {
            return true;
        };

        // The block moves its last row into the hole; the ids follow the same way.
        let moved = block.vectors.swap_remove(row);
        block.items.swap_remove(row as usize);
        debug_assert_eq!(moved.is_some(), (row as usize) < block.items.len());
        if let Some(moved_id) = block.items.get(row as usize)
            && let Some(location) = self.rows.get_mut(&(kind, moved_id.clone()))
        {
            location.1 = row;
        }
        if block.items.is_empty() {
            // An empty block still holds device buffers.
            self.blocks.remove(&key);
        }
        true
    }

    /// The best `k` items of `scope` for `query` (unit length), best first, none scoring below
    /// `min_score`. `k` is at most [`MAX_K`].
    pub fn search(
        &self,
        query: &[f32],
        scope: &Scope,
        k: usize,
        min_score: Option<f32>,
    ) -> Result<Vec<Candidate>, ModelError> {
        let k = k.min(MAX_K);
        let mut candidates = Vec::new();
        for (key, block) in &self.blocks {
            if !scope.covers(&key.project_id, key.kind) {
                continue;
            }
            for hit in block.vectors.top_k(query, k)? {
                candidates.push(Candidate {
                    kind: key.kind,
                    id: block.items[hit.row as usize].clone(),
                    project_id: key.project_id.clone(),
                    score: hit.score,
                });
            }
        }
        Ok(merge(candidates, k, min_score))
    }
}

/// One ranking from the blocks' own: best score first, ties by kind and id (so that equal
/// scores come in the same order every time), at most `k`, none below `min_score`. A score
/// that is not a number never ranks.
pub fn merge(mut candidates: Vec<Candidate>, k: usize, min_score: Option<f32>) -> Vec<Candidate> {
    candidates.retain(|candidate| {
        candidate.score.is_finite() && min_score.is_none_or(|floor| candidate.score >= floor)
    });
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.kind.cmp(&b.kind))
            .then_with(|| a.id.cmp(&b.id))
    });
    candidates.truncate(k);
    candidates
}

/// `vector` scaled to unit length; `None` if it holds a value that is not finite. A zero
/// vector stays zero (it scores 0 against everything).
pub fn normalized(vector: &[f32]) -> Option<Vec<f32>> {
    if !vector.iter().all(|value| value.is_finite()) {
        return None;
    }
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Some(vector.to_vec());
    }
    Some(vector.iter().map(|value| value / norm).collect())
}

#[cfg(test)]
mod tests {
    use nexus_models::DeviceChoice;
    use nexus_models::search::top_k_reference;

    use super::*;

    fn candidate(kind: Kind, id: &str, score: f32) -> Candidate {
        Candidate {
            kind,
            id: id.to_string(),
            project_id: "p".to_string(),
            score,
        }
    }

    #[test]
    fn merge_ranks_across_blocks_breaks_ties_and_applies_the_floor() {
        let merged = merge(
            vec![
                candidate(Kind::Asset, "b", 0.5),
                candidate(Kind::Canvas, "z", 0.9),
                candidate(Kind::Asset, "a", 0.5),
                candidate(Kind::Canvas, "y", 0.5),
                candidate(Kind::Canvas, "nan", f32::NAN),
                candidate(Kind::Canvas, "low", 0.1),
            ],
            4,
            Some(0.2),
        );
        let order: Vec<(&str, f32)> = merged.iter().map(|c| (c.id.as_str(), c.score)).collect();
        assert_eq!(order, [("z", 0.9), ("y", 0.5), ("a", 0.5), ("b", 0.5)]);

        let merged = merge(vec![candidate(Kind::Canvas, "low", 0.1)], 10, None);
        assert_eq!(merged.len(), 1);
        assert!(merge(vec![candidate(Kind::Canvas, "x", 0.3)], 0, None).is_empty());
    }

    #[test]
    fn normalizing_gives_unit_vectors_and_refuses_non_finite_ones() {
        let unit = normalized(&[3.0, 4.0]).unwrap();
        assert!((unit[0] - 0.6).abs() < 1e-6 && (unit[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalized(&[0.0, 0.0]).unwrap(), [0.0, 0.0]);
        assert!(normalized(&[1.0, f32::INFINITY]).is_none());
    }

    /// A deterministic pseudo-random unit vector.
    fn vector(seed: u32, dims: usize) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let raw: Vec<f32> = (0..dims)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        normalized(&raw).unwrap()
    }

    /// The blocks' bookkeeping through inserts, replacements, moves between projects and
    /// removals (which move rows around) always answers what one brute-force pass over the
    /// surviving vectors answers.
    #[test]
    fn searches_stay_exact_through_changes_and_filters() {
        let dims = 16;
        let device = ComputeDevice::open(DeviceChoice::Cpu).unwrap();
        let mut index = Index::new(device, dims);
        // The model of the index: (kind, id) -> (project, vector).
        let mut expected: HashMap<(Kind, String), (String, Vec<f32>)> = HashMap::new();
        let mut apply = |index: &mut Index, kind: Kind, id: &str, project: Option<&str>, seed| {
            let key = (kind, id.to_string());
            match project {
                Some(project) => {
                    let vector = vector(seed, dims);
                    index.upsert(kind, id, project, &vector);
                    expected.insert(key, (project.to_string(), vector));
                }
                None => {
                    assert_eq!(index.remove(kind, id), expected.remove(&key).is_some());
                }
            }
            expected.clone()
        };

        for n in 0..40u32 {
            let kind = if n % 3 == 0 {
                Kind::Asset
            } else {
                Kind::Canvas
            };
            let project = ["p1", "p2", "p3"][(n % 7 % 3) as usize];
            apply(&mut index, kind, &format!("item-{n}"), Some(project), n);
        }
        // Replace some, move some to another project, remove some from the middle and ends.
        for n in [1u32, 5, 8] {
            apply(
                &mut index,
                Kind::Canvas,
                &format!("item-{n}"),
                Some("p1"),
                n + 100,
            );
        }
        apply(&mut index, Kind::Canvas, "item-2", Some("p3"), 7);
        for n in [0u32, 4, 10, 38, 39, 17] {
            let kind = if n % 3 == 0 {
                Kind::Asset
            } else {
                Kind::Canvas
            };
            apply(&mut index, kind, &format!("item-{n}"), None, 0);
        }
        let expected = apply(&mut index, Kind::Asset, "never-there", None, 0);
        assert_eq!(index.len(), expected.len());

        let query = vector(999, dims);
        let scopes = [
            Scope::everything(),
            Scope {
                projects: Some(vec!["p1".into(), "p3".into()]),
                kinds: vec![Kind::Canvas],
            },
            Scope {
                projects: Some(vec!["p2".into()]),
                kinds: Kind::ALL.to_vec(),
            },
            Scope {
                projects: Some(vec!["nowhere".into()]),
                kinds: Kind::ALL.to_vec(),
            },
        ];
        for scope in scopes {
            let chosen: Vec<(&(Kind, String), &(String, Vec<f32>))> = expected
                .iter()
                .filter(|((kind, _), (project, _))| scope.covers(project, *kind))
                .collect();
            let flat: Vec<f32> = chosen.iter().flat_map(|(_, (_, v))| v.clone()).collect();
            let reference: Vec<Candidate> = if chosen.is_empty() {
                Vec::new()
            } else {
                top_k_reference(&flat, dims, &query, chosen.len())
                    .into_iter()
                    .map(|hit| {
                        let ((kind, id), (project, _)) = chosen[hit.row as usize];
                        Candidate {
                            kind: *kind,
                            id: id.clone(),
                            project_id: project.clone(),
                            score: hit.score,
                        }
                    })
                    .collect()
            };
            let reference = merge(reference, 5, None);

            let found = index.search(&query, &scope, 5, None).unwrap();
            let ids = |list: &[Candidate]| -> Vec<(Kind, String, String)> {
                list.iter()
                    .map(|c| (c.kind, c.id.clone(), c.project_id.clone()))
                    .collect()
            };
            assert_eq!(ids(&found), ids(&reference), "{scope:?}");
            for (a, b) in found.iter().zip(&reference) {
                assert!((a.score - b.score).abs() < 1e-5, "{scope:?}");
            }
        }
    }
}
