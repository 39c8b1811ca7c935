//! Audit log of executed DDL: records, redaction, the writer task, and the report.
pub mod cli;
