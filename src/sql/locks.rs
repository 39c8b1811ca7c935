//! The lock table: which PostgreSQL lock mode each DDL kind and each ALTER TABLE sub-command takes
//! on the existing relation it targets.
//!
//! Sources (PostgreSQL 15 documentation, unchanged in 16/17 for these rows):
//! - ALTER TABLE, "Description" and the per-form notes:
//!   <https://www.postgresql.org/docs/15/sql-altertable.html> — "An ACCESS EXCLUSIVE lock is
//!   acquired unless explicitly noted"; SHARE UPDATE EXCLUSIVE for SET STATISTICS, SET/RESET
//!   attribute options, VALIDATE CONSTRAINT, CLUSTER ON, SET WITHOUT CLUSTER, ATTACH PARTITION
//!   (on the parent), DETACH PARTITION CONCURRENTLY (on the parent) and the storage parameters
//!   fillfactor, toast/autovacuum parameters and parallel_workers; SHARE ROW EXCLUSIVE for
//!   ADD FOREIGN KEY (on both tables) and ENABLE/DISABLE TRIGGER.
//!   The "XXX could be SHARE ROW EXCLUSIVE" group in `AlterTableGetLockLevel` (tablecmds.c:
//!   SET/DROP DEFAULT, ALTER CONSTRAINT, ADD ... USING INDEX, REPLICA IDENTITY, SET NOT NULL,
//!   row level security) is ACCESS EXCLUSIVE today.
//! - CREATE INDEX: SHARE on the table; CONCURRENTLY: SHARE UPDATE EXCLUSIVE
//!   <https://www.postgresql.org/docs/15/sql-createindex.html>.
//! - DROP INDEX: ACCESS EXCLUSIVE on the table; CONCURRENTLY: SHARE UPDATE EXCLUSIVE
//!   <https://www.postgresql.org/docs/15/sql-dropindex.html>.
//! - REINDEX: SHARE on the table (ACCESS EXCLUSIVE on the index); CONCURRENTLY: SHARE UPDATE
//!   EXCLUSIVE <https://www.postgresql.org/docs/15/sql-reindex.html>.
//! - CLUSTER, VACUUM FULL, TRUNCATE, DROP TABLE, REFRESH MATERIALIZED VIEW: ACCESS EXCLUSIVE;
//!   REFRESH ... CONCURRENTLY: EXCLUSIVE; plain VACUUM and ANALYZE: SHARE UPDATE EXCLUSIVE;
//!   CREATE TRIGGER: SHARE ROW EXCLUSIVE; COMMENT ON: SHARE UPDATE EXCLUSIVE; ALTER INDEX RENAME:
//!   SHARE UPDATE EXCLUSIVE (PG ≥ 12)
//!   <https://www.postgresql.org/docs/15/explicit-locking.html#LOCKING-TABLES>.
use super::facts::{ActionKind, ConstraintKind, Cost, LockMode, StatementKind};

use ActionKind as A;
use LockMode::*;

/// Lock taken on the altered table by one ALTER TABLE sub-command.
pub fn action_lock(kind: ActionKind) -> LockMode {
    match kind {
        A::SetStatistics
        | A::SetColumnOptions
        | A::ValidateConstraint
        | A::ClusterOn
        | A::SetWithoutCluster
        | A::AttachPartition
        | A::StorageParams { light: true } => ShareUpdateExclusive,
        A::AddConstraint(ConstraintKind::ForeignKey) | A::EnableDisableTrigger => ShareRowExclusive,
        A::AddColumn
        | A::DropColumn
        | A::AlterColumnType
        | A::SetDefault
        | A::DropDefault
        | A::SetNotNull
        | A::DropNotNull
        | A::DropExpression
        | A::SetExpression
        | A::AlterIdentity
        | A::ChangeIdentity
        | A::SetStorage
        | A::SetCompression
        | A::AddConstraint(_)
        | A::DropConstraint
        | A::AlterConstraint
        | A::RenameConstraint
        | A::RenameColumn
        | A::RenameTable
        | A::Rename
        | A::SetSchema
        | A::SetTablespace
        | A::SetLogged
        | A::SetUnlogged
        | A::SetAccessMethod
        | A::StorageParams { light: false }
        | A::SetWithoutOids
        | A::EnableDisableRule
        | A::RowLevelSecurity
        | A::ReplicaIdentity
        | A::Inherit
        | A::NoInherit
        | A::OfType
        | A::NotOf
        | A::OwnerTo
        | A::DetachPartition
        | A::Other => AccessExclusive,
    }
}

/// What an ALTER TABLE sub-command does to the data, before live facts refine it
/// (ALTER COLUMN TYPE may be binary-coercible; ADD COLUMN depends on its default).
pub fn action_cost(kind: ActionKind) -> Cost {
    match kind {
        A::AlterColumnType | A::SetLogged | A::SetUnlogged | A::SetAccessMethod => Cost::Rewrite,
        // Recomputes every row of a stored generated column (PG 17 docs, ALTER TABLE).
        A::SetExpression => Cost::Rewrite,
        // SET TABLESPACE copies every block: the same cost as a rewrite for the lock holder.
        A::SetTablespace => Cost::Rewrite,
        A::SetNotNull | A::AttachPartition => Cost::Scan,
        A::AddConstraint(ConstraintKind::Check | ConstraintKind::ForeignKey) => Cost::Scan,
        A::AddConstraint(ConstraintKind::NotNull) => Cost::Scan,
        A::AddConstraint(
            ConstraintKind::Unique | ConstraintKind::PrimaryKey | ConstraintKind::Exclude,
        ) => Cost::IndexBuild,
        // VALIDATE scans, but under SHARE UPDATE EXCLUSIVE: that is the point of it.
        A::ValidateConstraint => Cost::Scan,
        _ => Cost::None,
    }
}

/// Lock taken on the statement's main existing relation, for statements other than ALTER TABLE.
/// `concurrently` is the statement's CONCURRENTLY flag. `None`: no lock on an existing table
/// that matters to the application (CREATE TABLE, CREATE TYPE, SET, ...).
pub fn statement_lock(kind: StatementKind, concurrently: bool) -> Option<LockMode> {
    use StatementKind as K;
    Some(match kind {
        K::CreateIndex | K::Reindex if concurrently => ShareUpdateExclusive,
        K::CreateIndex | K::Reindex => Share,
        K::DropIndex if concurrently => ShareUpdateExclusive,
        K::DropIndex => AccessExclusive,
        K::RefreshMaterializedView if concurrently => Exclusive,
        K::RefreshMaterializedView => AccessExclusive,
        K::DropTable | K::Truncate | K::Cluster | K::VacuumFull | K::DropTrigger => AccessExclusive,
        K::Vacuum | K::Analyze | K::Comment => ShareUpdateExclusive,
        K::CreateTrigger => ShareRowExclusive,
        // ALTER INDEX RENAME takes SHARE UPDATE EXCLUSIVE since PG 12; the other forms
        // (SET TABLESPACE, ATTACH PARTITION) are stronger, set by the parser.
        K::AlterIndex => ShareUpdateExclusive,
        // LOCK TABLE without IN ... MODE.
        K::Lock => AccessExclusive,
        _ => return None,
    })
}

/// Data cost of statements other than ALTER TABLE.
pub fn statement_cost(kind: StatementKind) -> Cost {
    use StatementKind as K;
    match kind {
        K::CreateIndex | K::Reindex => Cost::IndexBuild,
        K::Cluster | K::VacuumFull | K::RefreshMaterializedView => Cost::Rewrite,
        _ => Cost::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConstraintKind as C;
    use StatementKind as K;

    // One test per row of the tables above: a change to a row must be a deliberate one.
    macro_rules! action_rows {
        ($($name:ident: $kind:expr => $mode:expr;)*) => {
            $( #[test] fn $name() { assert_eq!(action_lock($kind), $mode); } )*
        };
    }

    action_rows! {
        add_column: A::AddColumn => AccessExclusive;
        drop_column: A::DropColumn => AccessExclusive;
        alter_column_type: A::AlterColumnType => AccessExclusive;
        set_default: A::SetDefault => AccessExclusive;
        drop_default: A::DropDefault => AccessExclusive;
        set_not_null: A::SetNotNull => AccessExclusive;
        drop_not_null: A::DropNotNull => AccessExclusive;
        drop_expression: A::DropExpression => AccessExclusive;
        set_expression: A::SetExpression => AccessExclusive;
        rename_object: A::Rename => AccessExclusive;
        alter_identity: A::AlterIdentity => AccessExclusive;
        change_identity: A::ChangeIdentity => AccessExclusive;
        set_statistics: A::SetStatistics => ShareUpdateExclusive;
        set_column_options: A::SetColumnOptions => ShareUpdateExclusive;
        set_storage: A::SetStorage => AccessExclusive;
        set_compression: A::SetCompression => AccessExclusive;
        add_check: A::AddConstraint(C::Check) => AccessExclusive;
        add_foreign_key: A::AddConstraint(C::ForeignKey) => ShareRowExclusive;
        add_unique: A::AddConstraint(C::Unique) => AccessExclusive;
        add_primary_key: A::AddConstraint(C::PrimaryKey) => AccessExclusive;
        add_exclude: A::AddConstraint(C::Exclude) => AccessExclusive;
        add_not_null: A::AddConstraint(C::NotNull) => AccessExclusive;
        validate_constraint: A::ValidateConstraint => ShareUpdateExclusive;
        drop_constraint: A::DropConstraint => AccessExclusive;
        alter_constraint: A::AlterConstraint => AccessExclusive;
        rename_constraint: A::RenameConstraint => AccessExclusive;
        rename_column: A::RenameColumn => AccessExclusive;
        rename_table: A::RenameTable => AccessExclusive;
        set_schema: A::SetSchema => AccessExclusive;
        set_tablespace: A::SetTablespace => AccessExclusive;
        set_logged: A::SetLogged => AccessExclusive;
        set_unlogged: A::SetUnlogged => AccessExclusive;
        set_access_method: A::SetAccessMethod => AccessExclusive;
        storage_params_light: A::StorageParams { light: true } => ShareUpdateExclusive;
        storage_params_other: A::StorageParams { light: false } => AccessExclusive;
        cluster_on: A::ClusterOn => ShareUpdateExclusive;
        set_without_cluster: A::SetWithoutCluster => ShareUpdateExclusive;
        set_without_oids: A::SetWithoutOids => AccessExclusive;
        enable_disable_trigger: A::EnableDisableTrigger => ShareRowExclusive;
        enable_disable_rule: A::EnableDisableRule => AccessExclusive;
        row_level_security: A::RowLevelSecurity => AccessExclusive;
        replica_identity: A::ReplicaIdentity => AccessExclusive;
        inherit: A::Inherit => AccessExclusive;
        no_inherit: A::NoInherit => AccessExclusive;
        of_type: A::OfType => AccessExclusive;
        not_of: A::NotOf => AccessExclusive;
        owner_to: A::OwnerTo => AccessExclusive;
        attach_partition: A::AttachPartition => ShareUpdateExclusive;
        detach_partition: A::DetachPartition => AccessExclusive;
        other_action: A::Other => AccessExclusive;
    }

    macro_rules! statement_rows {
        ($($name:ident: $kind:expr, $conc:expr => $mode:expr;)*) => {
            $( #[test] fn $name() { assert_eq!(statement_lock($kind, $conc), $mode); } )*
        };
    }

    statement_rows! {
        create_index: K::CreateIndex, false => Some(Share);
        create_index_concurrently: K::CreateIndex, true => Some(ShareUpdateExclusive);
        drop_index: K::DropIndex, false => Some(AccessExclusive);
        drop_index_concurrently: K::DropIndex, true => Some(ShareUpdateExclusive);
        reindex: K::Reindex, false => Some(Share);
        reindex_concurrently: K::Reindex, true => Some(ShareUpdateExclusive);
        refresh: K::RefreshMaterializedView, false => Some(AccessExclusive);
        refresh_concurrently: K::RefreshMaterializedView, true => Some(Exclusive);
        drop_table: K::DropTable, false => Some(AccessExclusive);
        truncate: K::Truncate, false => Some(AccessExclusive);
        cluster: K::Cluster, false => Some(AccessExclusive);
        vacuum_full: K::VacuumFull, false => Some(AccessExclusive);
        vacuum: K::Vacuum, false => Some(ShareUpdateExclusive);
        analyze: K::Analyze, false => Some(ShareUpdateExclusive);
        comment: K::Comment, false => Some(ShareUpdateExclusive);
        create_trigger: K::CreateTrigger, false => Some(ShareRowExclusive);
        drop_trigger: K::DropTrigger, false => Some(AccessExclusive);
        alter_index: K::AlterIndex, false => Some(ShareUpdateExclusive);
        lock_default: K::Lock, false => Some(AccessExclusive);
        create_table: K::CreateTable, false => None;
        create_type: K::CreateType, false => None;
        set: K::Set, false => None;
    }

    #[test]
    fn costs() {
        assert_eq!(action_cost(A::AlterColumnType), Cost::Rewrite);
        assert_eq!(action_cost(A::SetNotNull), Cost::Scan);
        assert_eq!(action_cost(A::AddColumn), Cost::None);
        assert_eq!(action_cost(A::SetExpression), Cost::Rewrite);
        assert_eq!(statement_cost(K::CreateIndex), Cost::IndexBuild);
        assert_eq!(statement_cost(K::VacuumFull), Cost::Rewrite);
    }
}
