//! Placeholder: this crate is being written.

pub mod retained;
pub mod topic_tree;
