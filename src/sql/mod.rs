//! Analysis of statement text: prefilter (lexer), parser adapter, statement facts, lock table.
pub mod lexer;
