//! Label and group ids: indices into an ordered list of names.

use serde::{Deserialize, Serialize};

/// A label's index in an ordered list of label names (a dataset's
/// `label_names`, a fairness audit's `LabelSet`), 0-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabelId(pub u32);

/// A group's index: one value of a group column (its position among the
/// column's sorted values), or one combination of values for an
/// intersection, 0-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(pub u32);

macro_rules! index_methods {
    ($t:ty) => {
        impl $t {
            /// The id with this index.
            pub const fn new(index: u32) -> Self {
                Self(index)
            }
            /// The index, for slicing.
            pub const fn index(self) -> usize {
                self.0 as usize
            }
            /// The raw value.
            pub const fn get(self) -> u32 {
                self.0
            }
        }
    };
}

index_methods!(LabelId);
index_methods!(GroupId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialise_as_their_index() {
        assert_eq!(serde_json::to_string(&LabelId::new(3)).unwrap(), "3");
        let g: GroupId = serde_json::from_str("7").unwrap();
        assert_eq!((g.get(), g.index()), (7, 7));
    }
}
