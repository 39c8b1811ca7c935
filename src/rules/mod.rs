//! The rule catalogue: one rule per file, named after its id; `Rule` is the single list.
