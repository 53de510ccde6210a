//! The hook for constrained decoding: a request may carry a [`TokenConstraint`] (made by the
//! model layer, which knows the vocabulary: `rill_model::grammar`), from which each of its choices
//! starts its own [`ConstraintState`]. The sampler asks the state which tokens may come next,
//! masks the rest, and tells it the token chosen.

use std::fmt;
use std::sync::Arc;

/// A compiled constraint, shared by a request's choices.
pub trait TokenConstraint: Send + Sync {
    /// A fresh state at the start of the output, for one choice.
    fn start(&self) -> Box<dyn ConstraintState>;
}

/// One choice's position in its constraint.
pub trait ConstraintState: Send {
    /// The token ids that may come next; an error ends the constraint's use (logged).
    fn allowed(&mut self) -> Result<Vec<u32>, String>;
    /// Advances past `token`.
    fn accept(&mut self, token: u32) -> Result<(), String>;
}

/// A request's constraint in its sampling parameters: compared by identity.
#[derive(Clone)]
pub struct Constraint(pub Arc<dyn TokenConstraint>);

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Constraint")
    }
}

impl PartialEq for Constraint {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
