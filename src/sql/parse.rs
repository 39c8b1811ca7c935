//! The parser adapter: with its submodule `tree` (building the tree), the ONLY place that
//! imports squawk (DESIGN.md decision 3).
//!
//! It turns the concrete syntax tree of one statement into pgwarden's own [`StatementFacts`].
//! The tree is walked by node kind rather than through squawk's typed accessors: the kinds are
//! the grammar's production names and move less between squawk releases than the accessors do.
//! Every offset it reports is a byte offset into the caller's original query string.
use std::ops::Range;

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SourceFile, SyntaxKind as K, SyntaxNode, SyntaxToken};

use super::facts::*;
use super::locks;

pub mod dml;
pub mod routine_sig;
mod tree;
pub(crate) use tree::parse_tree;

/// Why a statement's text could not be turned into facts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The parser reported a syntax error.
    #[error("syntax error at byte {offset}: {message}")]
    Syntax { message: String, offset: usize },
    /// A psql backslash command: psql runs it, the server never sees it.
    #[error("psql meta-command (backslash command) at byte {offset}")]
    PsqlMetaCommand { offset: usize },
}

/// Parses `text[span]` (one statement as split by the prefilter) into facts. The parser may find
/// more than one statement in the range (the caller's split was coarse): each gets its facts.
pub fn parse_statement(text: &str, span: Range<usize>) -> Result<Vec<StatementFacts>, ParseError> {
    let Some(stmt_text) = text.get(span.clone()) else {
        return Err(ParseError::Syntax {
            message: "statement range is not on character boundaries".into(),
            offset: span.start,
        });
    };
    let base = span.start;
    let (root, first_error) = parse_tree(stmt_text);
    // squawk reads psql backslash commands as (odd) SQL without always complaining. The tree
    // walk is only worth it when there is a backslash at all.
    if let Some(tok) = stmt_text
        .contains('\\')
        .then(|| root.descendants_with_tokens())
        .into_iter()
        .flatten()
        .filter_map(|e| e.into_token())
        .find(|t| !t.kind().is_trivia() && t.text().starts_with('\\'))
    {
        return Err(ParseError::PsqlMetaCommand {
            offset: base + usize::from(tok.text_range().start()),
        });
    }
    if let Some((message, offset)) = first_error {
        return Err(ParseError::Syntax {
            message,
            offset: base + offset,
        });
    }
    let Some(file) = ast::SourceFile::cast(root) else {
        return Err(ParseError::Syntax {
            message: "the parser did not produce a source file".into(),
            offset: base,
        });
    };
    let mut out = Vec::new();
    for stmt in file.stmts() {
        let node = stmt.syntax();
        if node.kind() == K::EMPTY_STMT {
            continue;
        }
        out.push(statement_facts(
            node,
            Src {
                text: stmt_text,
                base,
            },
        ));
    }
    Ok(out)
}

/// The text a tree was parsed from, and where that text starts in the caller's query string.
/// Node text is sliced from it: rowan would rebuild it token by token.
#[derive(Clone, Copy)]
struct Src<'a> {
    text: &'a str,
    base: usize,
}

impl<'a> Src<'a> {
    /// Maps a node's range to the original text.
    fn range(self, node: &SyntaxNode) -> Range<usize> {
        let r = node.text_range();
        self.base + usize::from(r.start())..self.base + usize::from(r.end())
    }

    fn tok_range(self, tok: &SyntaxToken) -> Range<usize> {
        let r = tok.text_range();
        self.base + usize::from(r.start())..self.base + usize::from(r.end())
    }

    /// The node's text, comments and whitespace inside it included.
    fn text(self, node: &SyntaxNode) -> &'a str {
        let r = node.text_range();
        self.text
            .get(usize::from(r.start())..usize::from(r.end()))
            .unwrap_or_default()
    }
}

/// The first child node of `kind`. Most lookups are for optional clauses that are absent: the
/// green tree answers those without allocating a red cursor per child.
fn child(node: &SyntaxNode, kind: K) -> Option<SyntaxNode> {
    child_any(node, &[kind])
}

fn child_any(node: &SyntaxNode, kinds: &[K]) -> Option<SyntaxNode> {
    let raw = |k: &K| rowan::SyntaxKind((*k).into());
    let present = node.green().children().any(|c| {
        c.as_node()
            .is_some_and(|n| kinds.iter().any(|k| raw(k) == n.kind()))
    });
    if !present {
        return None;
    }
    node.children().find(|c| kinds.contains(&c.kind()))
}

fn descendant(node: &SyntaxNode, kind: K) -> Option<SyntaxNode> {
    node.descendants().find(|c| c.kind() == kind)
}

fn has_token(node: &SyntaxNode, kind: K) -> bool {
    let raw = rowan::SyntaxKind(kind.into());
    node.green()
        .children()
        .any(|c| c.as_token().is_some_and(|t| t.kind() == raw))
}

fn token(node: &SyntaxNode, kind: K) -> Option<SyntaxToken> {
    node.children_with_tokens()
        .filter_map(|e| e.into_token())
        .find(|t| t.kind() == kind)
}

/// The first non-trivia token under `node`.
fn first_token(node: &SyntaxNode) -> Option<SyntaxToken> {
    node.descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .find(|t| !t.kind().is_trivia())
}

/// Normalises one identifier token the way Postgres does: quoted → as written, unquoted →
/// folded to lower case.
fn ident_text(tok: &SyntaxToken) -> String {
    normalise_ident(tok.text())
}

fn normalise_ident(t: &str) -> String {
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        t[1..t.len() - 1].replace("\"\"", "\"")
    } else {
        t.to_lowercase()
    }
}

/// Identifier text of a name-like node (ColumnName, NameRef, PathSegment, ...).
fn name_of(node: &SyntaxNode) -> Option<String> {
    green_name(&node.green())
}

// Name reading works on the green tree: it needs kinds and token text only, and a red-tree walk
// allocates a cursor for every node it visits. Walks are preorder, like `descendants()`, and
// their depth is the tree's, which the prefilter bounds.

/// Identifier text of the first non-trivia token at or under `green`.
fn green_name(green: &rowan::GreenNodeData) -> Option<String> {
    fn first(green: &rowan::GreenNodeData) -> Option<&rowan::GreenTokenData> {
        green.children().find_map(|c| match c {
            rowan::NodeOrToken::Node(n) => first(n),
            rowan::NodeOrToken::Token(t) => (!K::from(t.kind().0).is_trivia()).then_some(t),
        })
    }
    first(green).map(|t| normalise_ident(t.text()))
}

fn green_is(green: &rowan::GreenNodeData, kinds: &[K]) -> bool {
    let k = K::from(green.kind().0);
    kinds.contains(&k)
}

/// The first node of one of `kinds` at or under `green`, in preorder.
fn green_find<'a>(
    green: &'a rowan::GreenNodeData,
    kinds: &[K],
) -> Option<&'a rowan::GreenNodeData> {
    if green_is(green, kinds) {
        return Some(green);
    }
    green
        .children()
        .find_map(|c| c.into_node().and_then(|n| green_find(n, kinds)))
}

/// The names of the nodes of `kinds` at or under `green`, in preorder (nested ones too).
fn green_names(green: &rowan::GreenNodeData, kinds: &[K], out: &mut Vec<String>) {
    if green_is(green, kinds) {
        out.extend(green_name(green));
    }
    for c in green.children() {
        if let Some(n) = c.into_node() {
            green_names(n, kinds, out);
        }
    }
}

/// Reads a (possibly qualified) name from the first PATH / PATH_REF under `node`.
pub(crate) fn object_name(node: &SyntaxNode) -> Option<ObjectName> {
    let green = node.green();
    let path = green_find(&green, &[K::PATH, K::PATH_REF])?;
    let mut segments = Vec::new();
    green_names(path, &[K::PATH_SEGMENT, K::PATH_SEGMENT_REF], &mut segments);
    let name = segments.pop()?;
    Some(ObjectName {
        schema: segments.pop(),
        name,
    })
}

/// All relation names directly under list-like children of `node` of the given kinds.
fn names_under(node: &SyntaxNode, kinds: &[K]) -> Vec<ObjectName> {
    node.descendants()
        .filter(|n| kinds.contains(&n.kind()))
        .filter_map(|n| object_name(&n))
        .collect()
}

/// Builds the facts of one statement node.
fn statement_facts(node: &SyntaxNode, src: Src<'_>) -> StatementFacts {
    let span = src.range(node);
    let kind = statement_kind(node);
    let mut f = StatementFacts::new(kind, span.clone());
    f.head_span = first_token(node).map(|t| src.tok_range(&t)).unwrap_or(span);
    f.flags.if_exists = child(node, K::IF_EXISTS).is_some();
    f.flags.if_not_exists = child(node, K::IF_NOT_EXISTS).is_some();
    f.flags.cascade = descendant_drop_behavior_cascade(node);
    f.flags.or_replace = child(node, K::OR_REPLACE).is_some();
    match kind {
        StatementKind::CreateTable | StatementKind::CreateTableAs => {
            create_table(node, src, &mut f)
        }
        StatementKind::CreateIndex => create_index(node, src, &mut f),
        StatementKind::DropIndex => {
            f.flags.concurrently = has_token(node, K::CONCURRENTLY_KW);
            f.targets = names_under(node, &[K::INDEX_REF]);
            if !f.flags.concurrently {
                f.concurrently_at = token(node, K::INDEX_KW).map(|t| InsertPoint {
                    at: src.tok_range(&t).end,
                });
            }
            // The table of an index is unknown without the catalog: the lock is recorded on
            // the index name, which the live context can resolve to its table.
            lock_targets(&mut f);
        }
        StatementKind::Reindex => reindex(node, src, &mut f),
        StatementKind::AlterTable => alter_table(node, src, &mut f),
        StatementKind::AlterIndex => {
            f.targets = names_under(node, &[K::INDEX_REF])
                .into_iter()
                .take(1)
                .collect();
            let heavy = child(node, K::SET_TABLESPACE).is_some()
                || child(node, K::SET_OPTIONS).is_some()
                || child(node, K::RESET_OPTIONS).is_some();
            let mode = if heavy {
                LockMode::AccessExclusive
            } else {
                LockMode::ShareUpdateExclusive
            };
            for t in f.targets.clone() {
                f.add_lock(t, mode);
            }
            f.table = f.targets.first().cloned();
            // RENAME TO / SET SCHEMA of the index, for the rename and schema rules.
            f.actions = node
                .children()
                .filter(|c| matches!(c.kind(), K::INDEX_RENAME_TO | K::SET_SCHEMA))
                .filter_map(|c| action_facts(&c, src))
                .collect();
        }
        StatementKind::DropTable => {
            f.targets = names_under(node, &[K::TABLE_NAME_REF]);
            lock_targets(&mut f);
        }
        StatementKind::DropDatabase => {
            f.targets = node
                .descendants()
                .find(|n| n.kind() == K::DATABASE_REF)
                .and_then(|n| name_of(&n))
                .map(|n| vec![ObjectName::new(None, &n)])
                .unwrap_or_default();
        }
        StatementKind::Truncate => {
            f.targets = names_under(node, &[K::TABLE_NAME_REF]);
            lock_targets(&mut f);
        }
        StatementKind::Cluster => {
            f.targets = names_under(node, &[K::TABLE_NAME_REF]);
            lock_targets(&mut f);
        }
        StatementKind::VacuumFull | StatementKind::Vacuum | StatementKind::Analyze => {
            f.targets = names_under(node, &[K::TABLE_NAME_REF]);
            lock_targets(&mut f);
        }
        StatementKind::RefreshMaterializedView => {
            f.flags.concurrently = has_token(node, K::CONCURRENTLY_KW);
            f.flags.with_no_data = node
                .descendants_with_tokens()
                .filter_map(|e| e.into_token())
                .any(|t| t.kind() == K::NO_KW);
            f.targets = names_under(node, &[K::VIEW_REF])
                .into_iter()
                .take(1)
                .collect();
            if !f.flags.concurrently {
                f.concurrently_at = token(node, K::VIEW_KW).map(|t| InsertPoint {
                    at: src.tok_range(&t).end,
                });
            }
            lock_targets(&mut f);
        }
        StatementKind::AlterType => alter_type(node, src, &mut f),
        StatementKind::CreateType => {
            f.targets = names_under(node, &[K::TYPE_NAME])
                .into_iter()
                .take(1)
                .collect();
        }
        StatementKind::CreateDomain => {
            f.targets = names_under(node, &[K::DOMAIN])
                .into_iter()
                .take(1)
                .collect();
            f.constraints = node
                .children()
                .filter_map(|c| constraint_facts(&c, src))
                .collect();
        }
        StatementKind::AlterDomain => {
            f.targets = names_under(node, &[K::DOMAIN_REF])
                .into_iter()
                .take(1)
                .collect();
            // DROP DEFAULT / DROP CONSTRAINT / SET NOT NULL / RENAME / SET SCHEMA.
            collect_actions(node, src, &mut f);
            f.actions
                .retain(|a| !matches!(a.kind, ActionKind::AddConstraint(_)));
            if let Some(add) = child(node, K::ADD_CONSTRAINT) {
                f.flags.add_constraint = true;
                f.constraints = add
                    .children()
                    .filter_map(|c| constraint_facts(&c, src))
                    .collect();
            }
        }
        StatementKind::CreateTrigger | StatementKind::DropTrigger => {
            f.targets = child(node, K::ON_RELATION)
                .and_then(|n| object_name(&n))
                .into_iter()
                .collect();
            lock_targets(&mut f);
        }
        StatementKind::Lock => {
            f.targets = names_under(node, &[K::RELATION_NAME_REF]);
            f.requested_lock = Some(
                descendant(node, K::LOCK_MODE_CLAUSE)
                    .map(|n| lock_mode_words(&n))
                    .unwrap_or(LockMode::AccessExclusive),
            );
            let mode = f.requested_lock.unwrap_or(LockMode::AccessExclusive);
            for t in f.targets.clone() {
                f.add_lock(t, mode);
            }
            f.table = f.targets.first().cloned();
        }
        StatementKind::Do => do_block(node, src, &mut f),
        StatementKind::DropObject | StatementKind::AlterObject => {
            object_statement(node, src, &mut f)
        }
        StatementKind::CreateView | StatementKind::CreateOther | StatementKind::CreatePolicy => {
            f.targets = object_name(node).into_iter().collect();
        }
        StatementKind::Commit | StatementKind::Rollback => {
            f.flags.and_chain = child(node, K::AND_CHAIN).is_some();
        }
        StatementKind::CreateFunction => routine_body(node, src, &mut f),
        StatementKind::Set => set_stmt(node, &mut f),
        StatementKind::Reset => {
            f.setting = descendant(node, K::CONFIG_PARAMETER_REF)
                .map(|n| src.text(&n).to_lowercase())
                .map(|name| SettingFacts { name, value: None });
        }
        _ => {}
    }
    f
}

/// Records the statement-level lock on every target (DROP TABLE, TRUNCATE, ...).
fn lock_targets(f: &mut StatementFacts) {
    if let Some(mode) = locks::statement_lock(f.kind, f.flags.concurrently) {
        for t in f.targets.clone() {
            f.add_lock(t, mode);
        }
    }
    f.table = f.targets.first().cloned();
    f.cost = locks::statement_cost(f.kind);
}

fn descendant_drop_behavior_cascade(node: &SyntaxNode) -> bool {
    child(node, K::CASCADE).is_some() || has_token(node, K::CASCADE_KW)
}

fn statement_kind(node: &SyntaxNode) -> StatementKind {
    use StatementKind as S;
    match node.kind() {
        K::CREATE_TABLE => S::CreateTable,
        K::CREATE_TABLE_AS | K::SELECT_INTO => S::CreateTableAs,
        K::CREATE_INDEX => S::CreateIndex,
        K::DROP_INDEX => S::DropIndex,
        K::REINDEX => S::Reindex,
        K::ALTER_TABLE => S::AlterTable,
        K::ALTER_INDEX => S::AlterIndex,
        K::DROP_TABLE => S::DropTable,
        K::DROP_DATABASE => S::DropDatabase,
        K::TRUNCATE => S::Truncate,
        K::CLUSTER => S::Cluster,
        K::VACUUM => {
            let full = has_token(node, K::FULL_KW)
                || child(node, K::VACUUM_OPTION_LIST).is_some_and(|l| {
                    l.children().any(|o| {
                        let t = o.text().to_string().to_lowercase();
                        t.split_whitespace().next() == Some("full") && option_is_on(&t)
                    })
                });
            if full {
                S::VacuumFull
            } else {
                S::Vacuum
            }
        }
        K::ANALYZE => S::Analyze,
        K::REFRESH => S::RefreshMaterializedView,
        K::CREATE_TYPE => S::CreateType,
        K::ALTER_TYPE => S::AlterType,
        K::CREATE_DOMAIN => S::CreateDomain,
        K::ALTER_DOMAIN => S::AlterDomain,
        K::CREATE_TRIGGER => S::CreateTrigger,
        K::DROP_TRIGGER => S::DropTrigger,
        K::LOCK => S::Lock,
        K::COMMENT_ON => S::Comment,
        K::DO => S::Do,
        K::CREATE_FUNCTION | K::CREATE_PROCEDURE => S::CreateFunction,
        K::BEGIN => S::Begin,
        K::COMMIT_TRANSACTION | K::PREPARE_TRANSACTION => S::Commit,
        K::ROLLBACK_TRANSACTION => S::Rollback,
        K::SAVEPOINT_CREATE | K::RELEASE_SAVEPOINT | K::ROLLBACK_TO_SAVEPOINT => S::Savepoint,
        K::SET => S::Set,
        K::RESET => S::Reset,
        K::CREATE_POLICY => S::CreatePolicy,
        K::REVOKE | K::DROP_OWNED | K::REASSIGN => S::Revoke,
        K::CREATE_VIEW | K::CREATE_MATERIALIZED_VIEW => S::CreateView,
        K::CREATE_RULE | K::CREATE_AGGREGATE => S::CreateOther,
        k if object_type(k).is_some() => {
            if is_object_drop(k) {
                S::DropObject
            } else {
                S::AlterObject
            }
        }
        _ => S::Other,
    }
}

/// The object a generic DROP / ALTER statement node is about.
fn object_type(kind: K) -> Option<ObjectType> {
    use ObjectType as O;
    Some(match kind {
        K::DROP_VIEW | K::ALTER_VIEW => O::View,
        K::DROP_MATERIALIZED_VIEW | K::ALTER_MATERIALIZED_VIEW => O::MaterializedView,
        K::DROP_FOREIGN_TABLE | K::ALTER_FOREIGN_TABLE => O::ForeignTable,
        K::DROP_SEQUENCE | K::ALTER_SEQUENCE => O::Sequence,
        K::DROP_FUNCTION | K::ALTER_FUNCTION => O::Function,
        K::DROP_PROCEDURE | K::ALTER_PROCEDURE => O::Procedure,
        K::DROP_ROUTINE | K::ALTER_ROUTINE => O::Routine,
        K::DROP_AGGREGATE | K::ALTER_AGGREGATE => O::Aggregate,
        K::DROP_TYPE => O::Type,
        K::DROP_CAST | K::DROP_OPERATOR | K::DROP_OPERATOR_CLASS | K::DROP_OPERATOR_FAMILY => {
            O::TypeLike
        }
        K::DROP_DOMAIN => O::Domain,
        K::DROP_SCHEMA | K::ALTER_SCHEMA => O::Schema,
        K::DROP_EXTENSION | K::ALTER_EXTENSION => O::Extension,
        K::DROP_POLICY | K::ALTER_POLICY => O::Policy,
        K::ALTER_TRIGGER => O::Trigger,
        K::ALTER_ROLE | K::ALTER_USER | K::ALTER_GROUP => O::Role,
        K::ALTER_DATABASE => O::Database,
        K::ALTER_SYSTEM => O::System,
        _ => return None,
    })
}

/// Is this generic object statement a DROP (else an ALTER)?
fn is_object_drop(kind: K) -> bool {
    matches!(
        kind,
        K::DROP_VIEW
            | K::DROP_MATERIALIZED_VIEW
            | K::DROP_FOREIGN_TABLE
            | K::DROP_SEQUENCE
            | K::DROP_FUNCTION
            | K::DROP_PROCEDURE
            | K::DROP_ROUTINE
            | K::DROP_AGGREGATE
            | K::DROP_TYPE
            | K::DROP_CAST
            | K::DROP_OPERATOR
            | K::DROP_OPERATOR_CLASS
            | K::DROP_OPERATOR_FAMILY
            | K::DROP_DOMAIN
            | K::DROP_SCHEMA
            | K::DROP_EXTENSION
            | K::DROP_POLICY
    )
}

/// DropObject / AlterObject: the object, its names, and (ALTER) its sub-commands. No lock is
/// recorded: these objects hold no rows, and the lock rules are about tables.
fn object_statement(node: &SyntaxNode, src: Src<'_>, f: &mut StatementFacts) {
    f.object = object_type(node.kind());
    if f.kind == StatementKind::DropObject {
        // Every name the DROP lists (DROP VIEW a, b; DROP FUNCTION f(int), g).
        f.targets = node
            .children()
            .flat_map(|c| {
                if c.kind() == K::FUNCTION_SIG_LIST {
                    c.children().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .filter(|c| !matches!(c.kind(), K::IF_EXISTS | K::CASCADE | K::ON_TABLE))
            .filter_map(|c| object_name(&c))
            .collect();
        return;
    }
    f.targets = object_name(node).into_iter().collect();
    f.table = f.targets.first().cloned();
    collect_actions(node, src, f);
    for c in node.children() {
        if c.kind() == K::ALTER_POLICY_TO {
            for p in c.children() {
                let o = match p.kind() {
                    K::POLICY_ROLES => ObjectOption::PolicyRoles,
                    K::USING_EXPR_CLAUSE | K::WITH_CHECK_EXPR_CLAUSE => {
                        ObjectOption::PolicyCondition
                    }
                    _ => continue,
                };
                f.options.push((o, src.range(&p)));
            }
            continue;
        }
        let o = match c.kind() {
            K::FUNC_OPTION_LIST | K::ROLE_OPTION_LIST | K::DATABASE_OPTION_LIST => {
                ObjectOption::Options
            }
            K::SET_CONFIG_PARAM | K::RESET_CONFIG_PARAM => ObjectOption::Config,
            K::ALTER_EXTENSION_UPDATE => ObjectOption::ExtensionUpdate,
            K::ALTER_EXTENSION_DROP => ObjectOption::ExtensionDrop,
            K::OPTION_RESTART
            | K::OPTION_START
            | K::OPTION_INCREMENT
            | K::OPTION_MIN_VALUE
            | K::OPTION_MAX_VALUE
            | K::OPTION_NO_MIN_VALUE
            | K::OPTION_NO_MAX_VALUE
            | K::OPTION_CYCLE
            | K::OPTION_NO_CYCLE
            | K::OPTION_CACHE
            | K::OPTION_AS_TYPE => ObjectOption::SequenceValues,
            _ => continue,
        };
        f.options.push((o, src.range(&c)));
    }
}

/// The sub-commands directly under `node` (or under its ALTER TYPE action list).
fn collect_actions(node: &SyntaxNode, src: Src<'_>, f: &mut StatementFacts) {
    for c in node.children() {
        if c.kind() == K::ALTER_TYPE_ATTRIBUTE_ACTION_LIST {
            f.actions
                .extend(c.children().filter_map(|a| action_facts(&a, src)));
        } else if let Some(a) = action_facts(&c, src) {
            f.actions.push(a);
        }
    }
}

fn create_table(node: &SyntaxNode, src: Src<'_>, f: &mut StatementFacts) {
    // SELECT ... INTO tbl names its new table inside the INTO clause.
    f.targets = child(node, K::TABLE_NAME)
        .or_else(|| child(node, K::INTO_CLAUSE).and_then(|c| child(&c, K::TABLE_NAME)))
        .and_then(|n| object_name(&n))
        .into_iter()
        .collect();
    f.flags.temporary = child(node, K::TEMP).is_some();
    if let Some(args) = child(node, K::TABLE_ARG_LIST) {
        for arg in args.children() {
            if arg.kind() == K::COLUMN {
                f.columns.push(column_facts(&arg, src));
            } else if let Some(c) = constraint_facts(&arg, src) {
                f.constraints.push(c);
            }
        }
    }
    // The new table is empty; the tables it references take SHARE ROW EXCLUSIVE (FK triggers).
    let mut refs: Vec<ObjectName> = f
        .columns
        .iter()
        .flat_map(|c| c.constraints.iter())
        .chain(f.constraints.iter())
        .filter_map(|c| c.references.clone())
        .collect();
    refs.dedup();
    for r in refs {
        f.add_lock(r, LockMode::ShareRowExclusive);
    }
    if let Some(p) = child(node, K::PARTITION_OF) {
        f.flags.partition_of = true;
        if let Some(parent) = object_name(&p) {
            // CREATE TABLE ... PARTITION OF takes ACCESS EXCLUSIVE on the parent.
            f.add_lock(parent.clone(), LockMode::AccessExclusive);
            f.table = Some(parent);
        }
    }
}

fn create_index(node: &SyntaxNode, src: Src<'_>, f: &mut StatementFacts) {
    f.flags.concurrently = has_token(node, K::CONCURRENTLY_KW);
    f.flags.unique = has_token(node, K::UNIQUE_KW);
    f.targets = child(node, K::INDEX)
        .and_then(|n| object_name(&n))
        .into_iter()
        .collect();
    if let Some(rel) = child(node, K::TABLE_RELATION_NAME) {
        f.flags.only = has_token(&rel, K::ONLY_KW);
        if let Some(t) = object_name(&rel) {
            let mode =
                locks::statement_lock(f.kind, f.flags.concurrently).unwrap_or(LockMode::Share);
            f.add_lock(t.clone(), mode);
            f.table = Some(t);
        }
    }
    f.cost = Cost::IndexBuild;
    if let Some(items) = child(node, K::PARTITION_ITEM_LIST) {
        f.index_columns = items
            .children()
            .filter(|i| i.kind() == K::PARTITION_ITEM)
            .map(|i| {
                // A bare column is a single NAME_REF; anything else is an expression.
                let mut kids = i.children();
                match (kids.next(), kids.next()) {
                    (Some(n), None) if n.kind() == K::NAME_REF => name_of(&n).unwrap_or_default(),
                    _ => String::new(),
                }
            })
            .collect();
    }
    if !f.flags.concurrently {
        f.concurrently_at = token(node, K::INDEX_KW).map(|t| InsertPoint {
            at: src.tok_range(&t).end,
        });
    }
}

fn reindex(node: &SyntaxNode, src: Src<'_>, f: &mut StatementFacts) {
    let Some(target) = node.children().find(|c| {
        matches!(
            c.kind(),
            K::REINDEX_TARGET_TABLE
                | K::REINDEX_TARGET_INDEX
                | K::REINDEX_TARGET_SCHEMA
                | K::REINDEX_TARGET_DATABASE
                | K::REINDEX_TARGET_SYSTEM
        )
    }) else {
        return;
    };
    // `(CONCURRENTLY false)` / `(CONCURRENTLY off)` / `(CONCURRENTLY 0)` switch it off.
    f.flags.concurrently = has_token(&target, K::CONCURRENTLY_KW)
        || child(node, K::REINDEX_OPTION_LIST).is_some_and(|l| {
            l.children()
                .filter(|o| o.kind() == K::REINDEX_OPTION_CONCURRENTLY)
                .any(|o| option_is_on(src.text(&o)))
        });
    if let Some(name) = target
        .children()
        .find(|c| !matches!(c.kind(), K::WHITESPACE))
        .and_then(|c| object_name(&c).or_else(|| name_of(&c).map(|n| ObjectName::new(None, &n))))
    {
        f.targets.push(name);
    }
    if !f.flags.concurrently {
        // The keyword after REINDEX [(...)]: TABLE / INDEX / SCHEMA / DATABASE / SYSTEM.
        f.concurrently_at = target
            .children_with_tokens()
            .filter_map(|e| e.into_token())
            .find(|t| !t.kind().is_trivia())
            .map(|t| InsertPoint {
                at: src.tok_range(&t).end,
            });
    }
    if matches!(target.kind(), K::REINDEX_TARGET_SYSTEM) {
        f.concurrently_at = None;
    }
    lock_targets(f);
    if target.kind() == K::REINDEX_TARGET_INDEX && !f.flags.concurrently {
        // The index itself is locked ACCESS EXCLUSIVE: queries that would use it wait too.
        f.lock = Some(LockMode::AccessExclusive);
        if let Some(t) = f.targets.first().cloned() {
            f.add_lock(t, LockMode::AccessExclusive);
        }
    }
}

/// A boolean utility option as written (`CONCURRENTLY`, `FULL false`, `VERBOSE off`): on
/// unless its value is false, off, no or 0 (Postgres' boolean spellings, any case, quoted or not).
fn option_is_on(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    let mut words = t.split_whitespace().skip(1);
    !matches!(
        words.next().map(|w| w.trim_matches('\'')),
        Some("false" | "off" | "no" | "0" | "f" | "n")
    )
}

fn alter_type(node: &SyntaxNode, src: Src<'_>, f: &mut StatementFacts) {
    f.targets = names_under(node, &[K::TYPE_NAME_REF])
        .into_iter()
        .take(1)
        .collect();
    // DROP/RENAME/ADD ATTRIBUTE of a composite type, RENAME TO, SET SCHEMA.
    collect_actions(node, src, f);
    if let Some(add) = child(node, K::ADD_VALUE) {
        f.flags.add_value = true;
        f.flags.value_positioned = child_any(&add, &[K::BEFORE_VALUE, K::AFTER_VALUE]).is_some();
        f.enum_value = child(&add, K::LITERAL).map(|l| literal_value(&l));
    }
    if let Some(ren) = child(node, K::RENAME_VALUE) {
        f.flags.rename_value = true;
        f.enum_value = child(&ren, K::LITERAL).map(|l| literal_value(&l));
    }
}

/// Text of a simple string literal without quotes.
fn literal_value(node: &SyntaxNode) -> String {
    let t = node.text().to_string();
    let t = t.trim();
    if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') {
        t[1..t.len() - 1].replace("''", "'")
    } else {
        t.to_string()
    }
}

fn lock_mode_words(node: &SyntaxNode) -> LockMode {
    let words = node.text().to_string().to_lowercase();
    let words: Vec<&str> = words.split_whitespace().collect();
    let inner = words
        .iter()
        .skip_while(|w| **w == "in")
        .take_while(|w| **w != "mode")
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    match inner.as_str() {
        "access share" => LockMode::AccessShare,
        "row share" => LockMode::RowShare,
        "row exclusive" => LockMode::RowExclusive,
        "share update exclusive" => LockMode::ShareUpdateExclusive,
        "share" => LockMode::Share,
        "share row exclusive" => LockMode::ShareRowExclusive,
        "exclusive" => LockMode::Exclusive,
        _ => LockMode::AccessExclusive,
    }
}

fn set_stmt(node: &SyntaxNode, f: &mut StatementFacts) {
    f.flags.local = child(node, K::LOCAL_SCOPE).is_some();
    // `SET name { TO | = } value`: read words, the grammar of values is wide (lists, units).
    let text = node.text().to_string();
    let mut rest = text.trim().trim_end_matches(';').trim();
    rest = strip_word(rest, "set");
    for scope in ["local", "session"] {
        rest = strip_word(rest, scope);
    }
    let (name, value) = match rest.find(|c: char| c == '=' || c.is_whitespace()) {
        Some(i) => (&rest[..i], rest[i..].trim_start()),
        None => (rest, ""),
    };
    let value = value
        .strip_prefix('=')
        .map(str::trim_start)
        .unwrap_or_else(|| {
            let v = strip_word(value, "to");
            v
        });
    let name = name.trim().to_lowercase();
    if name.is_empty() || name == "transaction" || name == "session" || name == "constraints" {
        return;
    }
    let value = value.trim();
    let value = if value.eq_ignore_ascii_case("default") || value.is_empty() {
        None
    } else {
        Some(value.trim_matches('\'').to_string())
    };
    f.setting = Some(SettingFacts { name, value });
}

fn strip_word<'a>(s: &'a str, word: &str) -> &'a str {
    let s = s.trim_start();
    match s.get(..word.len()) {
        Some(head)
            if head.eq_ignore_ascii_case(word)
                && s[word.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_whitespace()) =>
        {
            s[word.len()..].trim_start()
        }
        _ => s,
    }
}

/// Would the prefilter hand every statement of `text` to the parser (length, bracket depth,
/// operator chains within the default bounds)?
fn within_parser_bounds(text: &str) -> bool {
    let opts = super::AnalysisContext::default().lex;
    text.len() <= opts.max_statement_len
        && super::lexer::split(text, &opts).all(|s| {
            !matches!(
                s.unanalysable,
                Some(super::lexer::Unanalysable::TooDeep | super::lexer::Unanalysable::TooLong)
            )
        })
}

fn do_block(node: &SyntaxNode, src: Src<'_>, f: &mut StatementFacts) {
    let Some(d) = ast::Do::cast(node.clone()) else {
        f.opaque = true;
        return;
    };
    // The body is one string token to the prefilter, so its bounds were never checked: a DO
    // body nesting deeper than a statement may must not reach the parser either.
    if d.body()
        .and_then(|b| b.decoded_value())
        .is_some_and(|t| !within_parser_bounds(t.text()))
    {
        f.opaque = true;
        return;
    }
    let Some(body) = d.plpgsql() else {
        // Another language (plperl, plv8, ...): nothing pgwarden can read.
        f.opaque = true;
        return;
    };
    if !body.errors().is_empty() {
        f.opaque = true;
        return;
    }
    plpgsql_statements(&body, src, f);
    for inner in f.body.clone() {
        for (rel, mode) in inner.locks {
            f.add_lock(rel, mode);
        }
        f.cost = f.cost.max(inner.cost);
    }
}

/// The statements of a PL/pgSQL body (DO block or routine) into `f.body`; dynamic `EXECUTE`
/// makes `f` opaque.
fn plpgsql_statements(
    body: &squawk_syntax::plpgsql::Plpgsql,
    src: Src<'_>,
    f: &mut StatementFacts,
) {
    let root = body.syntax();
    for n in root.descendants() {
        match n.kind() {
            // Dynamic SQL: the text is only known at run time.
            K::PLPGSQL_DYN_EXECUTE_STMT => f.opaque = true,
            K::PLPGSQL_EXEC_SQL_STMT => {
                if let Some(stmt) = n.children().find(|c| c.kind() != K::SEMICOLON) {
                    let body_src = Src {
                        text: body.text(),
                        base: 0,
                    };
                    let mut inner = statement_facts(&stmt, body_src);
                    // Offsets inside the body are offsets into the decoded literal: map the
                    // statement's range back to the original text; inner spans are dropped to
                    // the whole statement (an escaped body does not map byte for byte).
                    let orig = body.source_range(stmt.text_range());
                    let outer =
                        src.base + usize::from(orig.start())..src.base + usize::from(orig.end());
                    remap(&mut inner, &outer);
                    f.body.push(inner);
                }
            }
            _ => {}
        }
    }
}

/// `CREATE [OR REPLACE] FUNCTION/PROCEDURE` with a PL/pgSQL body: the body runs later, when
/// the routine is called, so its statements are read (and checked like a DO block's, so DDL
/// in a routine is judged as in a DO block) but their locks are not this statement's.
/// Dynamic `EXECUTE` makes it opaque. SQL-language bodies (`AS '...'`, `BEGIN ATOMIC ... END`,
/// `RETURN ...`) are read statement by statement too. Other languages (C, plpython, ...) are
/// not read: a proxy cannot see what they do.
fn routine_body(node: &SyntaxNode, src: Src<'_>, f: &mut StatementFacts) {
    let body = ast::CreateFunction::cast(node.clone())
        .and_then(|c| c.plpgsql())
        .or_else(|| ast::CreateProcedure::cast(node.clone()).and_then(|c| c.plpgsql()));
    if let Some(body) = body {
        if !body.errors().is_empty() || !within_parser_bounds(body.text()) {
            f.opaque = true;
            return;
        }
        plpgsql_statements(&body, src, f);
        return;
    }
    // SQL-standard body (BEGIN ATOMIC ... END / RETURN expr): the statements are in the tree.
    for n in node.descendants() {
        if n.kind() == node.kind() {
            continue;
        }
        if !matches!(
            n.kind(),
            K::CREATE_TABLE
                | K::ALTER_TABLE
                | K::DROP_TABLE
                | K::CREATE_INDEX
                | K::DROP_INDEX
                | K::TRUNCATE
                | K::ALTER_TYPE
        ) {
            continue;
        }
        let mut inner = statement_facts(&n, src);
        inner.locks.clear();
        f.body.push(inner);
    }
    // `LANGUAGE sql AS '...'`: the string holds the statements.
    let sql = ast::CreateFunction::cast(node.clone())
        .and_then(|c| c.sql_body())
        .or_else(|| ast::CreateProcedure::cast(node.clone()).and_then(|c| c.sql_body()));
    let Some(body) = sql else { return };
    if !body.errors().is_empty() || !within_parser_bounds(body.text()) {
        f.opaque = true;
        return;
    }
    let body_src = Src {
        text: body.text(),
        base: 0,
    };
    for stmt in body.syntax().children() {
        let mut inner = statement_facts(&stmt, body_src);
        if inner.kind == StatementKind::Other {
            continue;
        }
        let orig = body.source_range(stmt.text_range());
        let outer = src.base + usize::from(orig.start())..src.base + usize::from(orig.end());
        remap(&mut inner, &outer);
        f.body.push(inner);
    }
}

/// Points every span of a statement parsed out of a DO body at the statement's range in the
/// original text, and drops rewrites (their offsets would be wrong).
fn remap(f: &mut StatementFacts, outer: &Range<usize>) {
    f.span = outer.clone();
    f.head_span = outer.clone();
    f.concurrently_at = None;
    for a in &mut f.actions {
        a.span = outer.clone();
        if let Some(c) = &mut a.constraint {
            c.span = outer.clone();
        }
        if let Some(c) = &mut a.column_def {
            c.name_span = outer.clone();
            if let Some(t) = &mut c.ty {
                t.span = outer.clone();
            }
            for k in &mut c.constraints {
                k.span = outer.clone();
            }
        }
        if let Some(t) = &mut a.new_type {
            t.span = outer.clone();
        }
    }
    for c in &mut f.columns {
        c.name_span = outer.clone();
        if let Some(t) = &mut c.ty {
            t.span = outer.clone();
        }
        for k in &mut c.constraints {
            k.span = outer.clone();
        }
    }
    for c in &mut f.constraints {
        c.span = outer.clone();
    }
}

const TYPE_KINDS: &[K] = &[
    K::PATH_TYPE,
    K::ARRAY_TYPE,
    K::VARCHAR_TYPE,
    K::CHARACTER_TYPE,
    K::BIT_TYPE,
    K::BIT_VARYING_TYPE,
    K::DOUBLE_TYPE,
    K::TIME_TYPE,
    K::TIMESTAMP_TYPE,
    K::INTERVAL_TYPE,
    K::PERCENT_TYPE,
];

fn type_facts(node: &SyntaxNode, src: Src<'_>) -> TypeFacts {
    let span = src.range(node);
    if node.kind() == K::ARRAY_TYPE {
        let mut inner = child_any(node, TYPE_KINDS)
            .map(|n| type_facts(&n, src))
            .unwrap_or(TypeFacts {
                name: String::new(),
                modifiers: None,
                is_array: true,
                span: span.clone(),
            });
        inner.is_array = true;
        inner.span = span;
        return inner;
    }
    let text = src.text(node).to_lowercase();
    let modifiers = text.find('(').and_then(|open| {
        text.rfind(')')
            .filter(|close| *close > open)
            .map(|close| text[open + 1..close].trim().to_string())
    });
    let name = match node.kind() {
        K::VARCHAR_TYPE => "varchar".to_string(),
        K::CHARACTER_TYPE => "bpchar".to_string(),
        K::DOUBLE_TYPE => "float8".to_string(),
        K::TIMESTAMP_TYPE | K::TIME_TYPE => {
            let base_name = if node.kind() == K::TIME_TYPE {
                "time"
            } else {
                "timestamp"
            };
            if contains_kind(node, K::WITH_TIMEZONE) {
                format!("{base_name}tz")
            } else {
                base_name.to_string()
            }
        }
        K::INTERVAL_TYPE => "interval".to_string(),
        K::BIT_TYPE => "bit".to_string(),
        K::BIT_VARYING_TYPE => "varbit".to_string(),
        _ => {
            let head = text.split('(').next().unwrap_or("").trim();
            let head = head.rsplit('.').next().unwrap_or(head).trim_matches('"');
            canonical_type(head).to_string()
        }
    };
    TypeFacts {
        name,
        modifiers,
        is_array: false,
        span,
    }
}

/// Postgres' internal names for the SQL spellings of built-in types.
fn canonical_type(name: &str) -> &str {
    match name {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "serial" | "serial4" => "serial4",
        "bigserial" | "serial8" => "serial8",
        "smallserial" | "serial2" => "serial2",
        "bool" | "boolean" => "bool",
        "real" | "float4" => "float4",
        "float" | "float8" => "float8",
        "decimal" | "numeric" => "numeric",
        "char" | "character" | "bpchar" => "bpchar",
        "varchar" => "varchar",
        "timestamptz" => "timestamptz",
        "timetz" => "timetz",
        other => other,
    }
}

fn column_facts(node: &SyntaxNode, src: Src<'_>) -> ColumnFacts {
    let name_node = child(node, K::COLUMN_NAME);
    let mut c = ColumnFacts {
        name: name_node.as_ref().and_then(name_of).unwrap_or_default(),
        name_span: name_node
            .as_ref()
            .map(|n| src.range(n))
            .unwrap_or_else(|| src.range(node)),
        ty: child_any(node, TYPE_KINDS).map(|t| type_facts(&t, src)),
        default: None,
        not_null: false,
        generated_stored: false,
        identity: false,
        constraints: Vec::new(),
    };
    // Clauses sit directly under Column (CREATE TABLE) or AddColumn (ALTER TABLE).
    for clause in node.children() {
        match clause.kind() {
            K::DEFAULT_CONSTRAINT => {
                let expr_text = clause
                    .children()
                    .filter(|n| n.kind() != K::CONSTRAINT_NAME_CLAUSE)
                    .map(|n| src.text(&n).to_string())
                    .collect::<Vec<_>>()
                    .join(" ");
                let (volatility, functions) = volatility_of(&clause);
                c.default = Some(DefaultFacts {
                    text: expr_text,
                    volatility,
                    functions,
                });
            }
            K::NOT_NULL_CONSTRAINT => c.not_null = true,
            K::GENERATED_CONSTRAINT => {
                if contains_kind(&clause, K::GENERATED_STORED)
                    || has_token_deep(&clause, K::STORED_KW)
                {
                    c.generated_stored = true;
                }
                if contains_kind(&clause, K::GENERATED_IDENTITY)
                    || has_token_deep(&clause, K::IDENTITY_KW)
                {
                    c.identity = true;
                }
            }
            _ => {
                if let Some(k) = constraint_facts(&clause, src) {
                    if k.kind == ConstraintKind::PrimaryKey {
                        c.not_null = true;
                    }
                    let mut k = k;
                    if k.columns.is_empty() {
                        k.columns.push(c.name.clone());
                    }
                    c.constraints.push(k);
                }
            }
        }
    }
    c
}

fn has_token_deep(node: &SyntaxNode, kind: K) -> bool {
    contains_kind(node, kind)
}

/// Is there a node or token of `kind` at or under `node`? Walks the green tree, which costs
/// no allocation (a red-tree walk allocates a cursor for every node it visits). The depth is
/// the tree's, which the prefilter bounds.
fn contains_kind(node: &SyntaxNode, kind: K) -> bool {
    fn walk(green: &rowan::GreenNodeData, raw: rowan::SyntaxKind) -> bool {
        green.kind() == raw
            || green.children().any(|c| match c {
                rowan::NodeOrToken::Node(n) => walk(n, raw),
                rowan::NodeOrToken::Token(t) => t.kind() == raw,
            })
    }
    walk(&node.green(), rowan::SyntaxKind(kind.into()))
}

/// Functions Postgres marks VOLATILE that people put in defaults.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "random",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "txid_current",
    "setseed",
];

/// Functions that are STABLE or IMMUTABLE: evaluated once for ADD COLUMN ... DEFAULT (PG ≥ 11).
const NON_VOLATILE_FUNCTIONS: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_setting",
    "lower",
    "upper",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "to_jsonb",
    "jsonb_build_object",
    "jsonb_build_array",
    "json_build_object",
    "array",
    "concat",
    "md5",
    "make_interval",
    "timezone",
    "date_trunc",
    "length",
    "abs",
    "round",
];

/// Built-in non-volatile functions without parameters (PG docs, "Date/Time Functions").
const ZERO_ARG_FUNCTIONS: &[&str] = &["now", "transaction_timestamp", "statement_timestamp"];

fn volatility_of(node: &SyntaxNode) -> (Volatility, Vec<String>) {
    let mut functions = Vec::new();
    let mut v = Volatility::Immutable;
    for call in node.descendants().filter(|n| n.kind() == K::CALL_EXPR) {
        let Some(fname) = call
            .children()
            .find(|c| {
                matches!(
                    c.kind(),
                    K::NAME_REF | K::FIELD_EXPR | K::PATH_REF | K::PATH
                )
            })
            .and_then(|n| {
                n.descendants_with_tokens()
                    .filter_map(|e| e.into_token())
                    .filter(|t| !t.kind().is_trivia() && t.kind() != K::DOT)
                    .last()
                    .map(|t| ident_text(&t))
            })
        else {
            continue;
        };
        // now(), transaction_timestamp(), statement_timestamp() take no argument: a call
        // with one is some other function of that name, which pgwarden does not know.
        let overload = ZERO_ARG_FUNCTIONS.contains(&fname.as_str())
            && child(&call, K::ARG_LIST).is_some_and(|l| l.children().next().is_some());
        let this = if VOLATILE_FUNCTIONS.contains(&fname.as_str()) {
            Volatility::Volatile
        } else if overload {
            Volatility::Unknown
        } else if NON_VOLATILE_FUNCTIONS.contains(&fname.as_str()) {
            Volatility::Stable
        } else {
            Volatility::Unknown
        };
        v = worse(v, this);
        functions.push(fname);
    }
    (v, functions)
}

fn worse(a: Volatility, b: Volatility) -> Volatility {
    fn rank(v: Volatility) -> u8 {
        match v {
            Volatility::Immutable => 0,
            Volatility::Stable => 1,
            Volatility::Unknown => 2,
            Volatility::Volatile => 3,
        }
    }
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Facts of a constraint node (table constraint, column constraint, ADD CONSTRAINT child).
fn constraint_facts(node: &SyntaxNode, src: Src<'_>) -> Option<ConstraintFacts> {
    let kind = match node.kind() {
        K::CHECK_CONSTRAINT => ConstraintKind::Check,
        K::FOREIGN_KEY_CONSTRAINT | K::REFERENCES_CONSTRAINT => ConstraintKind::ForeignKey,
        K::UNIQUE_CONSTRAINT => ConstraintKind::Unique,
        K::PRIMARY_KEY_CONSTRAINT => ConstraintKind::PrimaryKey,
        K::EXCLUDE_CONSTRAINT => ConstraintKind::Exclude,
        K::NOT_NULL_CONSTRAINT => ConstraintKind::NotNull,
        _ => return None,
    };
    let name = child(node, K::CONSTRAINT_NAME_CLAUSE)
        .and_then(|c| child(&c, K::CONSTRAINT_NAME))
        .and_then(|n| name_of(&n));
    let not_valid = contains_kind(node, K::NOT_VALID);
    let using_index = child_any(node, &[K::USING_INDEX, K::USING_INDEX_NAME]).is_some();
    let mut columns: Vec<String> = Vec::new();
    let col_list = match kind {
        ConstraintKind::ForeignKey => child(node, K::FOREIGN_KEY_COLUMN_LIST),
        _ => descendant(node, K::CONSTRAINT_COLUMN_REF_LIST)
            .or_else(|| descendant(node, K::COLUMN_REF_LIST)),
    };
    if kind == ConstraintKind::NotNull {
        // PG 18 `ADD CONSTRAINT nn NOT NULL col`: the column follows NOT NULL directly
        // (absent on a column's inline NOT NULL).
        columns.extend(
            node.children()
                .filter(|c| matches!(c.kind(), K::NAME_REF | K::COLUMN_NAME_REF))
                .filter_map(|c| name_of(&c)),
        );
    }
    if let Some(list) = col_list {
        green_names(
            &list.green(),
            &[K::COLUMN_NAME_REF, K::NAME_REF],
            &mut columns,
        );
    }
    let references = if kind == ConstraintKind::ForeignKey {
        child(node, K::TABLE_NAME_REF).and_then(|n| object_name(&n))
    } else {
        None
    };
    let checks_not_null_of = if kind == ConstraintKind::Check {
        is_not_null_check(src.text(node))
    } else {
        None
    };
    Some(ConstraintFacts {
        kind,
        name,
        not_valid,
        using_index,
        columns,
        references,
        checks_not_null_of,
        span: src.range(node),
    })
}

/// `CHECK (col IS NOT NULL)` → `Some(col)`.
fn is_not_null_check(text: &str) -> Option<String> {
    let text = text.to_lowercase();
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let inner = text.get(open + 1..close)?.trim();
    let inner = inner.trim_start_matches('(').trim_end_matches(')').trim();
    let col = inner.strip_suffix("is not null")?.trim();
    let col = col.trim_matches('"');
    if col.is_empty() || col.contains(char::is_whitespace) {
        return None;
    }
    Some(col.to_string())
}

fn alter_table(node: &SyntaxNode, src: Src<'_>, f: &mut StatementFacts) {
    let table = child(node, K::TABLE_RELATION_NAME).and_then(|rel| {
        f.flags.only = has_token(&rel, K::ONLY_KW);
        object_name(&rel)
    });
    f.targets = table.clone().into_iter().collect();
    f.table = table.clone();
    for action in node.children() {
        let Some(a) = action_facts(&action, src) else {
            continue;
        };
        if let Some(t) = &table {
            f.add_lock(t.clone(), a.lock);
        }
        // ADD FOREIGN KEY also takes SHARE ROW EXCLUSIVE on the referenced table.
        if let Some(r) = a
            .constraint
            .as_ref()
            .and_then(|c| c.references.clone())
            .or_else(|| {
                a.column_def
                    .as_ref()
                    .and_then(|c| c.constraints.iter().find_map(|k| k.references.clone()))
            })
        {
            f.add_lock(r, LockMode::ShareRowExclusive);
        }
        if let Some(p) = &a.partition {
            // ATTACH and plain DETACH take ACCESS EXCLUSIVE on the partition itself; the
            // concurrent detach (and its FINALIZE) only SHARE UPDATE EXCLUSIVE (PG 14 docs).
            let mode = if a.concurrently || a.finalize {
                LockMode::ShareUpdateExclusive
            } else {
                LockMode::AccessExclusive
            };
            f.add_lock(p.clone(), mode);
        }
        f.cost = f.cost.max(a.cost);
        f.actions.push(a);
    }
}

fn action_facts(node: &SyntaxNode, src: Src<'_>) -> Option<ActionFacts> {
    use ActionKind as A;
    let span = src.range(node);
    let kind = match node.kind() {
        K::ADD_COLUMN => A::AddColumn,
        K::DROP_COLUMN => A::DropColumn,
        K::ALTER_COLUMN => alter_column_kind(node),
        K::ADD_CONSTRAINT => {
            let c = node.children().find_map(|c| constraint_facts(&c, src))?;
            A::AddConstraint(c.kind)
        }
        K::VALIDATE_CONSTRAINT => A::ValidateConstraint,
        K::DROP_CONSTRAINT => A::DropConstraint,
        K::ALTER_CONSTRAINT => A::AlterConstraint,
        K::RENAME_CONSTRAINT => A::RenameConstraint,
        K::RENAME_COLUMN => A::RenameColumn,
        K::TABLE_RENAME_TO => A::RenameTable,
        K::VIEW_RENAME_TO
        | K::SEQUENCE_RENAME_TO
        | K::INDEX_RENAME_TO
        | K::FUNCTION_RENAME_TO
        | K::PROCEDURE_RENAME_TO
        | K::ROUTINE_RENAME_TO
        | K::AGGREGATE_RENAME_TO
        | K::TYPE_RENAME_TO
        | K::DOMAIN_RENAME_TO
        | K::SCHEMA_RENAME_TO
        | K::POLICY_RENAME_TO
        | K::TRIGGER_RENAME_TO
        | K::ROLE_RENAME_TO
        | K::DATABASE_RENAME_TO => A::Rename,
        K::SET_SCHEMA => A::SetSchema,
        // ALTER DOMAIN's sub-commands (ALTER TABLE has them under ALTER COLUMN).
        K::DROP_DEFAULT => A::DropDefault,
        K::SET_DEFAULT => A::SetDefault,
        K::SET_NOT_NULL => A::SetNotNull,
        K::DROP_NOT_NULL => A::DropNotNull,
        // ALTER TYPE's attributes are a composite type's columns.
        K::DROP_ATTRIBUTE => A::DropColumn,
        K::RENAME_ATTRIBUTE => A::RenameColumn,
        K::ADD_ATTRIBUTE => A::AddColumn,
        K::SET_TABLESPACE => A::SetTablespace,
        K::SET_LOGGED => A::SetLogged,
        K::SET_UNLOGGED => A::SetUnlogged,
        K::SET_ACCESS_METHOD => A::SetAccessMethod,
        K::SET_OPTIONS | K::RESET_OPTIONS => A::StorageParams {
            light: storage_params_light(node),
        },
        K::CLUSTER_ON => A::ClusterOn,
        K::SET_WITHOUT_CLUSTER => A::SetWithoutCluster,
        K::SET_WITHOUT_OIDS => A::SetWithoutOids,
        K::ENABLE_TRIGGER
        | K::DISABLE_TRIGGER
        | K::ENABLE_REPLICA_TRIGGER
        | K::ENABLE_ALWAYS_TRIGGER => A::EnableDisableTrigger,
        K::ENABLE_RULE | K::DISABLE_RULE | K::ENABLE_REPLICA_RULE | K::ENABLE_ALWAYS_RULE => {
            A::EnableDisableRule
        }
        K::ENABLE_RLS | K::DISABLE_RLS | K::FORCE_RLS | K::NO_FORCE_RLS => A::RowLevelSecurity,
        K::REPLICA_IDENTITY => A::ReplicaIdentity,
        K::INHERIT_TABLE => A::Inherit,
        K::NO_INHERIT_TABLE => A::NoInherit,
        K::OF_TYPE => A::OfType,
        K::NOT_OF => A::NotOf,
        K::OWNER_TO => A::OwnerTo,
        K::ATTACH_PARTITION => A::AttachPartition,
        K::DETACH_PARTITION => A::DetachPartition,
        K::MERGE_PARTITIONS | K::SPLIT_PARTITION | K::ALTER_OPTION_LIST | K::OPTION_ITEM_LIST => {
            A::Other
        }
        _ => return None,
    };
    let mut a = ActionFacts::new(
        kind,
        span,
        locks::action_lock(kind),
        locks::action_cost(kind),
    );
    a.guarded = child_any(node, &[K::IF_EXISTS, K::IF_NOT_EXISTS]).is_some();
    match node.kind() {
        K::DROP_ATTRIBUTE | K::RENAME_ATTRIBUTE => {
            a.column = child(node, K::COMPOSITE_FIELD_REF).and_then(|n| name_of(&n));
        }
        K::ADD_COLUMN => {
            let col = column_facts(node, src);
            a.column = Some(col.name.clone());
            a.column_def = Some(col);
        }
        K::DROP_COLUMN | K::ALTER_COLUMN | K::RENAME_COLUMN => {
            a.column = child(node, K::COLUMN_NAME_REF).and_then(|n| name_of(&n));
            if let Some(st) = descendant(node, K::SET_TYPE) {
                a.new_type = child_any(&st, TYPE_KINDS).map(|t| type_facts(&t, src));
                a.using_expr = child(&st, K::USING_EXPR).is_some();
            }
            if node.kind() == K::RENAME_COLUMN {
                a.new_name = child(node, K::COLUMN_NAME).and_then(|n| name_of(&n));
            }
        }
        K::ADD_CONSTRAINT => {
            a.constraint = node.children().find_map(|c| constraint_facts(&c, src));
            if a.constraint.as_ref().is_some_and(|c| c.not_valid) {
                // NOT VALID skips the scan: the point of the safe recipe.
                a.cost = Cost::None;
            }
            if a.constraint.as_ref().is_some_and(|c| c.using_index) {
                a.cost = Cost::None;
            }
            a.constraint_name = a.constraint.as_ref().and_then(|c| c.name.clone());
        }
        K::VALIDATE_CONSTRAINT
        | K::DROP_CONSTRAINT
        | K::ALTER_CONSTRAINT
        | K::RENAME_CONSTRAINT => {
            a.constraint_name = child(node, K::CONSTRAINT_NAME_REF).and_then(|n| name_of(&n));
        }
        K::TABLE_RENAME_TO => {
            a.new_name = node
                .descendants()
                .find(|n| n.kind() == K::PATH_SEGMENT)
                .and_then(|n| name_of(&n));
        }
        K::ATTACH_PARTITION => {
            a.partition = child(node, K::TABLE_NAME_REF).and_then(|n| object_name(&n));
            a.default_partition = contains_kind(node, K::PARTITION_DEFAULT);
        }
        K::DETACH_PARTITION => {
            a.partition = child(node, K::TABLE_NAME_REF).and_then(|n| object_name(&n));
            a.concurrently = child(node, K::DETACH_CONCURRENTLY).is_some();
            a.finalize = child(node, K::DETACH_FINALIZE).is_some();
            if a.concurrently || a.finalize {
                // Two transactions, each with SHARE UPDATE EXCLUSIVE on the parent.
                a.lock = LockMode::ShareUpdateExclusive;
            }
        }
        _ => {}
    }
    Some(a)
}

fn alter_column_kind(node: &SyntaxNode) -> ActionKind {
    use ActionKind as A;
    let Some(opt) = node
        .children()
        .find(|c| !matches!(c.kind(), K::COLUMN_NAME_REF | K::NAME_REF))
    else {
        return A::Other;
    };
    match opt.kind() {
        K::SET_TYPE => A::AlterColumnType,
        K::SET_DEFAULT => A::SetDefault,
        K::DROP_DEFAULT => A::DropDefault,
        K::SET_NOT_NULL => A::SetNotNull,
        K::DROP_NOT_NULL => A::DropNotNull,
        K::DROP_EXPRESSION => A::DropExpression,
        K::SET_EXPRESSION => A::SetExpression,
        K::DROP_IDENTITY | K::ADD_GENERATED => A::ChangeIdentity,
        K::SET_GENERATED | K::SET_GENERATED_OPTIONS if contains_kind(&opt, K::GENERATED_ALWAYS) => {
            A::ChangeIdentity
        }
        K::SET_GENERATED | K::SET_GENERATED_OPTIONS | K::SET_SEQUENCE_OPTION | K::RESTART => {
            A::AlterIdentity
        }
        K::SET_STATISTICS => A::SetStatistics,
        K::SET_OPTIONS | K::RESET_OPTIONS | K::SET_OPTIONS_LIST => A::SetColumnOptions,
        K::SET_STORAGE => A::SetStorage,
        K::SET_COMPRESSION => A::SetCompression,
        _ => A::Other,
    }
}

/// Storage parameters Postgres changes under SHARE UPDATE EXCLUSIVE (ALTER TABLE docs).
fn storage_params_light(node: &SyntaxNode) -> bool {
    let keys: Vec<String> = node
        .descendants()
        .filter(|n| n.kind() == K::ATTRIBUTE_OPTION)
        .map(|n| {
            n.text()
                .to_string()
                .to_lowercase()
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .collect();
    !keys.is_empty()
        && keys.iter().all(|k| {
            k == "fillfactor"
                || k == "parallel_workers"
                || k == "toast_tuple_target"
                || k.starts_with("autovacuum_")
                || k.starts_with("toast.")
        })
}

/// Does `text` parse without error, squawk's validator included? The run-time proof of a
/// rewrite uses the parser's verdict ([`parse_statement`]); the rule tests also hold every
/// rewrite to this stricter one.
pub fn parses_cleanly(text: &str) -> bool {
    let p = SourceFile::parse(text);
    p.errors().is_empty()
}

/// Statements squawk finds in a whole text: the reference count for the corpus test.
#[cfg(test)]
pub(crate) fn reference_statement_count(text: &str) -> usize {
    SourceFile::parse(text)
        .tree()
        .stmts()
        .filter(|s| s.syntax().kind() != K::EMPTY_STMT)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// squawk's own verdict: the first error of `Parse::errors()`, validator included.
    fn squawk_first_error(text: &str) -> Option<(String, usize)> {
        SourceFile::parse(text)
            .errors()
            .first()
            .map(|e| (e.message().to_string(), usize::from(e.range().start())))
    }

    /// On the whole migration corpus, the validation-free parse agrees with squawk's full
    /// verdict (every case is clean for both), and its tree is squawk's tree.
    #[test]
    fn parse_tree_is_squawks_parse_without_validation_on_the_corpus() {
        let bodies: Vec<String> = crate::sql::tests::corpus_cases()
            .into_iter()
            .map(|(_, body)| body)
            .collect();
        assert_eq!(bodies.len(), 282);
        for body in &bodies {
            let body = body.as_str();
            let (root, err) = parse_tree(body);
            assert_eq!(err, None, "{body}");
            assert_eq!(squawk_first_error(body), None, "{body}");
            assert_eq!(
                format!("{root:#?}"),
                format!("{:#?}", SourceFile::parse(body).syntax_node()),
                "{body}"
            );
        }
    }

    /// Parser and lexer errors are squawk's, at the same offset; only the validator's own
    /// findings are left out (statements the server refuses before taking any lock).
    #[test]
    fn parse_tree_reports_parser_and_lexer_errors_like_squawk() {
        for bad in [
            "CREATE INDEX ON",
            "ALTER TABLE orders ADD COLUMN",
            "CREATE TABLE t (a int,, b int)",
            "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0",
            "SELECT 'unterminated",
            "CREATE INDEX i ON t (a); ALTER TABLE",
        ] {
            let (_, err) = parse_tree(bad);
            let err = err.unwrap_or_else(|| panic!("no error for {bad}"));
            assert_eq!(Some(err.1), squawk_first_error(bad).map(|e| e.1), "{bad}");
            assert!(parse_statement(bad, 0..bad.len()).is_err(), "{bad}");
        }
        // Validator only: the grammar accepts them, PostgreSQL refuses them before any lock.
        for validator_only in ["CREATE TABLE t (a)", "CREATE TABLE left (a int)"] {
            assert!(
                squawk_first_error(validator_only).is_some(),
                "{validator_only}"
            );
            assert_eq!(parse_tree(validator_only).1, None, "{validator_only}");
            assert_eq!(one(validator_only).kind, StatementKind::CreateTable);
        }
    }

    /// The deepest statements the prefilter lets through parse on a 2 MiB thread (a tokio
    /// worker's default stack; this test thread's too) even in a debug build: brackets at the
    /// depth bound around an operator chain at the chain bound, in each shape that nests.
    #[test]
    fn deepest_statements_within_the_bounds_parse_on_a_small_stack() {
        let opts = crate::sql::AnalysisContext::default().lex;
        let depth = opts.max_depth;
        // (shape, repeated unit, prefilter tokens per unit)
        for (name, unit, tokens) in [
            ("not", "NOT ", 1),
            ("minus", "- ", 1),
            ("plus", "a + ", 2),
            ("cast", "::int", 3),
            ("case", "CASE WHEN a THEN ", 5),
        ] {
            // Leave room for the statement's own head tokens.
            let n = (opts.max_chain - 10) / tokens;
            let mut chain = unit.repeat(n);
            if name == "case" {
                chain.push_str(&format!("1{}", " END".repeat(n)));
            } else if name == "cast" {
                chain.insert(0, 'a');
            } else {
                chain.push('a');
            }
            let sql = format!(
                "ALTER TABLE t ADD CHECK {}{}{}",
                "(".repeat(depth - 1),
                chain,
                ")".repeat(depth - 1)
            );
            let lexed: Vec<_> = crate::sql::lexer::split(&sql, &opts).collect();
            assert_eq!(lexed[0].unanalysable, None, "{name}: within the bounds");
            let _ = parse_statement(&sql, 0..sql.len());
        }
    }

    /// A DO body is one string token to the prefilter; its own nesting is bounded here, and
    /// beyond the bound the block is opaque instead of a crash.
    #[test]
    fn do_body_beyond_the_bounds_is_opaque() {
        let deep = format!(
            "DO $$BEGIN PERFORM {}1{}; END$$",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        assert!(one(&deep).opaque);
        let chain = format!("DO $$BEGIN PERFORM {}1; END$$", "1+".repeat(5000));
        assert!(one(&chain).opaque);
        let fine = "DO $$BEGIN ALTER TABLE t ADD COLUMN c int; END$$";
        let f = one(fine);
        assert!(!f.opaque);
        assert_eq!(f.body.len(), 1);
    }

    fn one(sql: &str) -> StatementFacts {
        let mut v = parse_statement(sql, 0..sql.len()).expect("parses");
        assert_eq!(v.len(), 1, "{v:?}");
        v.remove(0)
    }

    #[test]
    fn create_index_facts() {
        let sql = r#"create unique index "Ix" on only public."Orders" (a) where b"#;
        let f = one(sql);
        assert_eq!(f.kind, StatementKind::CreateIndex);
        assert_eq!(f.table, Some(ObjectName::new(Some("public"), "Orders")));
        assert_eq!(f.targets, vec![ObjectName::new(None, "Ix")]);
        assert_eq!(f.lock, Some(LockMode::Share));
        assert!(f.flags.unique && f.flags.only && !f.flags.concurrently);
        assert_eq!(&sql[..f.concurrently_at.unwrap().at], "create unique index");
    }

    #[test]
    fn create_index_concurrently_flags() {
        let f = one("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)");
        assert!(f.flags.concurrently);
        assert!(f.flags.if_not_exists);
        assert_eq!(f.lock, Some(LockMode::ShareUpdateExclusive));
        assert!(f.concurrently_at.is_none());
    }

    #[test]
    fn alter_table_one_fact_per_subcommand_and_strongest_lock() {
        let sql = "alter table if exists only s.t add column c int not null default now(), \
                   alter column d type text using d::text, \
                   add constraint fk foreign key (a) references u(id) not valid, \
                   alter c set not null, detach partition p concurrently, \
                   alter column e set statistics 100";
        let f = one(sql);
        assert_eq!(f.kind, StatementKind::AlterTable);
        assert!(f.flags.if_exists && f.flags.only);
        let kinds: Vec<ActionKind> = f.actions.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ActionKind::AddColumn,
                ActionKind::AlterColumnType,
                ActionKind::AddConstraint(ConstraintKind::ForeignKey),
                ActionKind::SetNotNull,
                ActionKind::DetachPartition,
                ActionKind::SetStatistics,
            ]
        );
        assert_eq!(f.lock, Some(LockMode::AccessExclusive));
        assert_eq!(
            f.lock_on(&ObjectName::new(None, "u")),
            Some(LockMode::ShareRowExclusive)
        );
        let add = f.actions[0].column_def.as_ref().unwrap();
        assert_eq!(add.name, "c");
        assert_eq!(add.ty.as_ref().unwrap().name, "int4");
        assert!(add.not_null);
        assert_eq!(add.default.as_ref().unwrap().volatility, Volatility::Stable);
        assert!(f.actions[1].using_expr);
        assert!(f.actions[2].constraint.as_ref().unwrap().not_valid);
        assert!(f.actions[4].concurrently);
        assert_eq!(
            f.lock_on(&ObjectName::new(None, "p")),
            Some(LockMode::ShareUpdateExclusive)
        );
        assert_eq!(f.cost, Cost::Rewrite);
        assert_eq!(&sql[f.actions[3].span.clone()], "alter c set not null");
    }

    #[test]
    fn now_with_arguments_is_not_the_builtin() {
        let vol = |sql: &str| {
            one(sql).actions[0]
                .column_def
                .as_ref()
                .and_then(|c| c.default.as_ref())
                .map(|d| d.volatility)
        };
        assert_eq!(
            vol("ALTER TABLE t ADD COLUMN at timestamptz DEFAULT now()"),
            Some(Volatility::Stable)
        );
        assert_eq!(
            vol("ALTER TABLE t ADD COLUMN at timestamptz DEFAULT now(123)"),
            Some(Volatility::Unknown)
        );
    }

    #[test]
    fn reindex_concurrently_option_values() {
        for (opt, on) in [
            ("(CONCURRENTLY)", true),
            ("(CONCURRENTLY true)", true),
            ("(CONCURRENTLY on, VERBOSE)", true),
            ("(CONCURRENTLY false)", false),
            ("(VERBOSE, CONCURRENTLY off)", false),
            ("(CONCURRENTLY 0)", false),
            ("(VERBOSE)", false),
        ] {
            let f = one(&format!("REINDEX {opt} TABLE t"));
            assert_eq!(f.flags.concurrently, on, "{opt}");
        }
    }

    #[test]
    fn generated_expression_identity_and_pg18_not_null() {
        let f = one("ALTER TABLE t ALTER COLUMN g SET EXPRESSION AS (a + 1), ALTER COLUMN g DROP EXPRESSION");
        let kinds: Vec<ActionKind> = f.actions.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            vec![ActionKind::SetExpression, ActionKind::DropExpression]
        );
        assert_eq!(f.cost, Cost::Rewrite);
        for (sql, kind) in [
            ("ALTER COLUMN a DROP IDENTITY", ActionKind::ChangeIdentity),
            (
                "ALTER COLUMN a ADD GENERATED ALWAYS AS IDENTITY",
                ActionKind::ChangeIdentity,
            ),
            (
                "ALTER COLUMN a SET GENERATED ALWAYS",
                ActionKind::ChangeIdentity,
            ),
            (
                "ALTER COLUMN a SET GENERATED BY DEFAULT",
                ActionKind::AlterIdentity,
            ),
            ("ALTER COLUMN a RESTART WITH 10", ActionKind::AlterIdentity),
        ] {
            assert_eq!(
                one(&format!("ALTER TABLE t {sql}")).actions[0].kind,
                kind,
                "{sql}"
            );
        }
        let nn = one("ALTER TABLE t ADD CONSTRAINT nn NOT NULL col");
        let c = nn.actions[0].constraint.as_ref().unwrap();
        assert_eq!(
            (c.kind, c.columns.clone()),
            (ConstraintKind::NotNull, vec!["col".to_string()])
        );
    }

    #[test]
    fn select_into_creates_its_table() {
        let f = one("SELECT a, b INTO archive FROM orders");
        assert_eq!(f.kind, StatementKind::CreateTableAs);
        assert_eq!(f.targets, vec![ObjectName::new(None, "archive")]);
    }

    #[test]
    fn generic_object_statements() {
        let f = one("DROP FUNCTION IF EXISTS f(int), s.g");
        assert_eq!(
            (f.kind, f.object),
            (StatementKind::DropObject, Some(ObjectType::Function))
        );
        assert_eq!(
            f.targets,
            vec![ObjectName::new(None, "f"), ObjectName::new(Some("s"), "g")]
        );
        assert!(f.flags.if_exists);
        let f = one("ALTER VIEW v RENAME COLUMN a TO b");
        assert_eq!(
            (f.kind, f.object),
            (StatementKind::AlterObject, Some(ObjectType::View))
        );
        assert_eq!(f.actions[0].kind, ActionKind::RenameColumn);
        assert_eq!(f.actions[0].column.as_deref(), Some("a"));
        assert!(
            f.locks.is_empty(),
            "views hold no rows: no table lock recorded"
        );
        let f = one("ALTER TYPE addr DROP ATTRIBUTE zip");
        assert_eq!(f.actions[0].kind, ActionKind::DropColumn);
        assert_eq!(f.actions[0].column.as_deref(), Some("zip"));
        let f = one("ALTER DOMAIN d SET NOT NULL");
        assert_eq!(f.actions[0].kind, ActionKind::SetNotNull);
        assert_eq!(
            one("ALTER SEQUENCE s SET SCHEMA x").actions[0].kind,
            ActionKind::SetSchema
        );
        assert_eq!(
            one("ALTER INDEX i RENAME TO j").actions[0].kind,
            ActionKind::Rename
        );
        assert!(one("ROLLBACK AND CHAIN").flags.and_chain);
        let f = one("ALTER TABLE t ADD COLUMN IF NOT EXISTS a int, DROP COLUMN b");
        assert!(f.actions[0].guarded && !f.actions[1].guarded);
    }

    #[test]
    fn volatile_default_detected() {
        let f = one("ALTER TABLE t ADD COLUMN id uuid DEFAULT gen_random_uuid()");
        let d = f.actions[0]
            .column_def
            .as_ref()
            .unwrap()
            .default
            .clone()
            .unwrap();
        assert_eq!(d.volatility, Volatility::Volatile);
        let f = one("ALTER TABLE t ADD COLUMN x int DEFAULT my_fn()");
        let d = f.actions[0]
            .column_def
            .as_ref()
            .unwrap()
            .default
            .clone()
            .unwrap();
        assert_eq!(d.volatility, Volatility::Unknown);
        assert_eq!(d.functions, vec!["my_fn".to_string()]);
        let f = one("ALTER TABLE t ADD COLUMN x jsonb DEFAULT '{}'::jsonb");
        let d = f.actions[0]
            .column_def
            .as_ref()
            .unwrap()
            .default
            .clone()
            .unwrap();
        assert_eq!(d.volatility, Volatility::Immutable);
    }

    #[test]
    fn do_block_body_is_read() {
        let sql = "DO $$ BEGIN ALTER TABLE t ADD x int; CREATE INDEX i ON t(x); END $$";
        let f = one(sql);
        assert_eq!(f.kind, StatementKind::Do);
        assert!(!f.opaque);
        assert_eq!(f.body.len(), 2);
        assert_eq!(f.body[1].kind, StatementKind::CreateIndex);
        assert_eq!(&sql[f.body[1].span.clone()], "CREATE INDEX i ON t(x)");
        assert_eq!(f.lock, Some(LockMode::AccessExclusive));
    }

    #[test]
    fn routine_bodies_are_read_but_take_no_lock_now() {
        for sql in [
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER TABLE big DROP COLUMN x; END $$",
            "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS $$ ALTER TABLE big DROP COLUMN x $$",
            "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC ALTER TABLE big DROP COLUMN x; END",
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'ALTER TABLE big DROP COLUMN x'",
        ] {
            let f = one(sql);
            assert_eq!(f.kind, StatementKind::CreateFunction, "{sql}");
            let kinds: Vec<StatementKind> = f.body.iter().map(|b| b.kind).collect();
            assert!(kinds.contains(&StatementKind::AlterTable), "{sql}: {kinds:?}");
            assert_eq!(f.lock, None, "{sql}");
            assert!(!f.opaque, "{sql}");
        }
        let f = one("CREATE FUNCTION f(t text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'DROP TABLE ' || t; END $$");
        assert!(f.opaque);
        let f = one("CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1");
        assert!(f.body.is_empty() && !f.opaque);
    }

    #[test]
    fn do_block_with_execute_is_opaque() {
        let f = one("DO $$ BEGIN EXECUTE 'drop table y'; END $$");
        assert!(f.opaque);
        let f = one("DO LANGUAGE plperl $$ print 1 $$");
        assert!(f.opaque);
    }

    #[test]
    fn psql_meta_command_is_refused() {
        let sql = "\\copy foo from 'bar'";
        assert!(matches!(
            parse_statement(sql, 0..sql.len()),
            Err(ParseError::PsqlMetaCommand { .. })
        ));
    }

    #[test]
    fn syntax_error_is_reported_with_offset() {
        let sql = "ALTER TABLE t ADD COLUMN";
        assert!(matches!(
            parse_statement(sql, 0..sql.len()),
            Err(ParseError::Syntax { .. })
        ));
    }

    #[test]
    fn set_and_transactions() {
        let f = one("SET LOCAL lock_timeout = '2s'");
        assert_eq!(f.kind, StatementKind::Set);
        assert!(f.flags.local);
        assert_eq!(
            f.setting,
            Some(SettingFacts {
                name: "lock_timeout".into(),
                value: Some("2s".into())
            })
        );
        let f = one("SET statement_timeout TO 0");
        assert_eq!(f.setting.unwrap().value.as_deref(), Some("0"));
        assert_eq!(one("BEGIN").kind, StatementKind::Begin);
        assert_eq!(one("START TRANSACTION").kind, StatementKind::Begin);
        assert_eq!(one("COMMIT").kind, StatementKind::Commit);
        assert_eq!(one("END").kind, StatementKind::Commit);
        assert_eq!(one("ROLLBACK").kind, StatementKind::Rollback);
        assert_eq!(one("SAVEPOINT a").kind, StatementKind::Savepoint);
        assert_eq!(
            one("ROLLBACK TO SAVEPOINT a").kind,
            StatementKind::Savepoint
        );
    }

    #[test]
    fn misc_kinds() {
        assert_eq!(one("VACUUM FULL t").kind, StatementKind::VacuumFull);
        assert_eq!(
            one("VACUUM (FULL, VERBOSE) t").kind,
            StatementKind::VacuumFull
        );
        assert_eq!(one("VACUUM (VERBOSE) t").kind, StatementKind::Vacuum);
        let f = one("REINDEX (VERBOSE) TABLE t");
        assert_eq!(f.lock, Some(LockMode::Share));
        assert!(f.concurrently_at.is_some());
        let f = one("REINDEX TABLE CONCURRENTLY t");
        assert!(f.flags.concurrently);
        let f = one("DROP INDEX IF EXISTS a.i1, i2 CASCADE");
        assert_eq!(f.targets.len(), 2);
        assert!(f.flags.cascade && f.flags.if_exists);
        let f = one("TRUNCATE t1, t2 CASCADE");
        assert!(f.flags.cascade);
        assert_eq!(f.targets.len(), 2);
        let f = one("LOCK TABLE t IN SHARE MODE");
        assert_eq!(f.requested_lock, Some(LockMode::Share));
        let f = one("ALTER TYPE mood ADD VALUE 'meh'");
        assert!(f.flags.add_value);
        assert_eq!(f.enum_value.as_deref(), Some("meh"));
    }

    #[test]
    fn create_table_columns() {
        let f = one(
            "CREATE TABLE x (id serial PRIMARY KEY, a varchar(50), b timestamp, \
             c timestamp with time zone, d char(2), e int REFERENCES y(id))",
        );
        let names: Vec<&str> = f
            .columns
            .iter()
            .map(|c| c.ty.as_ref().unwrap().name.as_str())
            .collect();
        assert_eq!(
            names,
            vec![
                "serial4",
                "varchar",
                "timestamp",
                "timestamptz",
                "bpchar",
                "int4"
            ]
        );
        assert_eq!(
            f.lock_on(&ObjectName::new(None, "y")),
            Some(LockMode::ShareRowExclusive)
        );
    }

    #[test]
    fn not_null_check_is_recognised() {
        let f = one("ALTER TABLE t ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID");
        let c = f.actions[0].constraint.as_ref().unwrap();
        assert_eq!(c.checks_not_null_of.as_deref(), Some("col"));
        assert!(c.not_valid);
    }
}
