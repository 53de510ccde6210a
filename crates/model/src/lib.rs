//! placeholder-free crate root; modules land per issue.
