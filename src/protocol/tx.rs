//! The transaction status a server reports in every ReadyForQuery: a wire fact every layer reads.

/// Transaction status as last reported by the server's ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block (the server ignores everything until ROLLBACK).
    Failed,
}

impl TxStatus {
    /// The status of a ReadyForQuery status byte; anything but `T`/`E` reads as idle.
    pub fn from_byte(b: u8) -> TxStatus {
        match b {
            b'T' => TxStatus::InTransaction,
            b'E' => TxStatus::Failed,
            _ => TxStatus::Idle,
        }
    }

    /// The status byte of a ReadyForQuery.
    pub fn as_byte(self) -> u8 {
        match self {
            TxStatus::Idle => b'I',
            TxStatus::InTransaction => b'T',
            TxStatus::Failed => b'E',
        }
    }
}
