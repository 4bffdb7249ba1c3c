//! The DDL that protects (and unprotects) a table, as plain text built in plain Rust.
//!
//! Every identifier is double-quoted and every literal quoted here, so the glue only has to
//! resolve names and types from the catalog and run the statements.

use super::scope::{Field, Scope};
use crate::boundary::claims::Role;
use crate::pg::catalog::{quote_ident, quote_literal, validate_identifier, Column};
use serde::{Deserialize, Serialize};

/// Policies this extension owns are named `boundary_*`; nothing else may use the prefix.
pub const ALLOW_POLICY: &str = "boundary_allow";
pub const SELECT_POLICY: &str = "boundary_select";
pub const INSERT_POLICY: &str = "boundary_insert";
pub const UPDATE_POLICY: &str = "boundary_update";
pub const DELETE_POLICY: &str = "boundary_delete";
pub const POLICIES: [&str; 5] = [ALLOW_POLICY, SELECT_POLICY, INSERT_POLICY, UPDATE_POLICY, DELETE_POLICY];
/// What the permissive policy admits by: true, through a function of the extension.
pub const ADMIT: &str = "boundary.installed()";
/// What `boundary_allow` admits in the distributable shape: nothing.
pub const ADMIT_NOTHING: &str = "NOT boundary.installed()";
pub const TRUNCATE_TRIGGER: &str = "boundary_refuse_truncate";
/// Refuses cascaded and trigger-made changes to rows outside the boundary (row level security
/// does not check referential actions).
pub const CASCADE_TRIGGER: &str = "boundary_refuse_cascade";
/// On Citus tables: refuses an inserted row outside the boundary. Citus copies the rows of
/// `COPY` and `INSERT ... SELECT` into the shards a node holds itself past row level security.
pub const INSERT_TRIGGER: &str = "boundary_refuse_insert";
/// Column names that are scoped automatically when a table has them.
pub const AUTO_WORKSPACE_COLUMN: &str = "workspace_id";
pub const AUTO_DATASOURCE_COLUMN: &str = "datasource_id";
pub const AUTO_USER_COLUMN: &str = "user_id";

/// How a scope column was chosen: found by its usual name, named by the caller, or turned off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "column")]
pub enum ColumnChoice {
    /// Use the usual column name if the table has it.
    Auto,
    /// Use this column; it must exist.
    Named(String),
    /// Do not scope by this field.
    Off,
}

impl ColumnChoice {
    /// SQL argument convention: NULL = auto, '' = off, anything else = that column.
    pub fn from_argument(what: &str, argument: Option<&str>) -> Result<Self, String> {
        match argument {
            None => Ok(Self::Auto),
            Some("") => Ok(Self::Off),
            Some(name) => {
                validate_identifier(what, name)?;
                Ok(Self::Named(name.to_string()))
            }
        }
    }
}

/// What the caller of `protect()` asked for. Stored (as JSON) in the comment of the
/// `boundary_select` policy, so re-protection after ALTER TABLE, protection of new partitions,
/// and `unprotect()` know the table's settings without a side table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectOptions {
    pub tenant_column: String,
    pub workspace_column: ColumnChoice,
    pub datasource_column: ColumnChoice,
    pub user_column: ColumnChoice,
    pub write_roles: Vec<Role>,
}

pub const COMMENT_MARKER: &str = "agent_boundary protect options: ";
/// The comment of `boundary_allow`: what `boundary.policies_fingerprint()` (policy.sql) gave
/// right after protect() made the policies.
pub const FINGERPRINT_MARKER: &str = "agent_boundary policies fingerprint: ";

pub fn fingerprint_comment(table: &str, fingerprint: &str) -> String {
    format!(
        "COMMENT ON POLICY {ALLOW_POLICY} ON {table} IS {}",
        quote_literal(&format!("{FINGERPRINT_MARKER}{fingerprint}"))
    )
}

impl ProtectOptions {
    pub fn to_comment(&self) -> String {
        format!("{COMMENT_MARKER}{}", serde_json::to_string(self).expect("serializable"))
    }

    pub fn from_comment(comment: &str) -> Option<Self> {
        serde_json::from_str(comment.strip_prefix(COMMENT_MARKER)?).ok()
    }
}

/// What a table already has from an earlier protect(), so re-running drops only what exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Existing {
    /// Which of [`POLICIES`] exist.
    pub policies: Vec<String>,
    /// Whether the TRUNCATE guard exists.
    pub truncate_trigger: bool,
    /// The cascade guard, if the table has one: `Inherited` when it is the clone of a
    /// partitioned parent's (which only the parent's can replace or drop).
    pub cascade_trigger: Option<Guard>,
    /// The insert guard of Citus tables, likewise.
    pub insert_trigger: Option<Guard>,
    /// Columns whose default is one of our accessors.
    pub accessor_defaults: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guard {
    Own,
    Inherited,
}

impl Existing {
    fn drop_policies(&self, table: &str) -> impl Iterator<Item = String> + '_ {
        let table = table.to_string();
        POLICIES
            .iter()
            .filter(|p| self.policies.iter().any(|e| e == *p))
            .map(move |p| format!("DROP POLICY {p} ON {table}"))
    }
}

/// How the generated policies combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A permissive `boundary_allow` that admits every row, and restrictive per-command policies
    /// ANDed with it and with any other policy, so no policy written later can widen them.
    Restrictive,
    /// For databases with Citus, which copies policies to shards without AS RESTRICTIVE: every
    /// per-command policy permissive and carrying the whole predicate, and a `boundary_allow`
    /// that admits nothing, so the shards' copies (all permissive) mean the same as the table's.
    Distributable,
}

/// Everything needed to write the DDL for one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtectPlan {
    /// Schema-qualified, quoted table name.
    pub table: String,
    pub scope: Scope,
    pub options: ProtectOptions,
    pub shape: Shape,
    /// A column whose default may not change (Citus' distribution column): left as it is.
    pub fixed_default: Option<String>,
    /// The table's own rule on top of the scope, if it has one (the stores').
    pub row_rule: Option<RowRule>,
}

/// A rule of the extension's own tables on top of their scope (a user's memories, a run's
/// state, a boundary's cache entries), ANDed into every per-command policy rather than kept as
/// a restrictive policy of its own: Citus would copy that to the shards as a permissive one,
/// which admits other tenants' rows. `{row}` stands for the row's prefix (`NEW.` in triggers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowRule {
    /// Which rows a boundary may see, change or delete.
    pub visible: &'static str,
    /// Which rows it may write.
    pub writable: &'static str,
}

impl RowRule {
    fn on(template: &str, row: &str) -> String {
        template.replace("{row}", row)
    }
}

impl ProtectPlan {
    /// The row predicate: every scoped column equals the boundary's value (datasource: is one
    /// of the boundary's datasources). Plain function calls, no subqueries.
    pub fn row_predicate(&self) -> String {
        self.scope.predicate(|field| Scope::accessor(field).to_string())
    }

    /// When the cascade guard refuses a change: made below the top level (a referential action
    /// or another trigger, which row level security does not check) to a row outside the
    /// boundary; outside any boundary, unless the session's role bypasses row level security
    /// anyway (a superuser's maintenance).
    pub fn cascade_guard_condition(&self) -> String {
        let old_row_inside = self.scope.predicate_on("OLD.", |field| Scope::accessor(field).to_string());
        format!(
            "pg_catalog.pg_trigger_depth() > 0 AND NOT CASE WHEN boundary.is_active() \
             THEN coalesce({old_row_inside}, false) ELSE boundary.outer_role_bypasses_rls() END"
        )
    }

    /// When the insert guard (Citus tables) refuses a row: when row level security would, that
    /// is unless the current role bypasses it (the extension's own writes, Citus moving shards,
    /// a superuser loading data), a row outside the boundary or any row without one.
    pub fn insert_guard_condition(&self) -> String {
        let new_row_inside = self.scope.predicate_on("NEW.", |field| Scope::accessor(field).to_string());
        let new_row_inside = match self.row_rule {
            Some(rule) => format!("{new_row_inside} AND {}", RowRule::on(rule.writable, "NEW.")),
            None => new_row_inside,
        };
        format!(
            "NOT boundary.current_role_bypasses_rls() AND NOT coalesce(boundary.is_active() \
             AND {new_row_inside} AND {}, false)",
            self.write_check()
        )
    }

    /// The rows a boundary may see, and those it may write: the scope, and the table's own rule.
    fn visible_and_writable(&self) -> (String, String) {
        let rows = self.row_predicate();
        match self.row_rule {
            Some(rule) => (
                format!("{rows} AND {}", RowRule::on(rule.visible, "")),
                format!("{rows} AND {}", RowRule::on(rule.writable, "")),
            ),
            None => (rows.clone(), rows),
        }
    }

    /// Roles allowed to write, e.g. `boundary.role() = ANY ('{owner,admin,member}'::text[])`.
    pub fn write_check(&self) -> String {
        let roles: Vec<&str> = self.options.write_roles.iter().map(|r| r.as_str()).collect();
        format!("boundary.role() = ANY ('{{{}}}'::text[])", roles.join(","))
    }

    /// The statements `protect()` runs on a table that has `existing`, in order.
    pub fn statements(&self, existing: &Existing) -> Vec<String> {
        let t = &self.table;
        let (rows, writable) = self.visible_and_writable();
        let write = format!("{writable} AND {}", self.write_check());
        let delete = format!("{rows} AND {}", self.write_check());
        let mut out = vec![
            format!("ALTER TABLE {t} ENABLE ROW LEVEL SECURITY"),
            format!("ALTER TABLE {t} FORCE ROW LEVEL SECURITY"),
        ];
        out.extend(existing.drop_policies(t));
        // Restrictive policies are ANDed with everything else, so no other policy can widen
        // them; PostgreSQL needs one permissive policy to admit rows at all. It says
        // boundary.installed() (true) rather than true, so dropping the extension drops it too
        // and the table denies every row instead of admitting every row. Where Citus copies the
        // policies as permissive ones, each carries its whole predicate and the allow policy
        // admits nothing (it stays, holding the fingerprint, so both shapes have the same five).
        let (admit, per_command) = match self.shape {
            Shape::Restrictive => (ADMIT, "RESTRICTIVE"),
            Shape::Distributable => (ADMIT_NOTHING, "PERMISSIVE"),
        };
        out.extend([
            format!(
                "CREATE POLICY {ALLOW_POLICY} ON {t} AS PERMISSIVE FOR ALL USING ({admit}) WITH CHECK ({admit})"
            ),
            format!("CREATE POLICY {SELECT_POLICY} ON {t} AS {per_command} FOR SELECT USING ({rows})"),
            format!("CREATE POLICY {INSERT_POLICY} ON {t} AS {per_command} FOR INSERT WITH CHECK ({write})"),
            format!(
                "CREATE POLICY {UPDATE_POLICY} ON {t} AS {per_command} FOR UPDATE USING ({rows}) WITH CHECK ({write})"
            ),
            format!("CREATE POLICY {DELETE_POLICY} ON {t} AS {per_command} FOR DELETE USING ({delete})"),
            format!("COMMENT ON POLICY {SELECT_POLICY} ON {t} IS {}", quote_literal(&self.options.to_comment())),
        ]);
        // Every scope column but the datasource (a row names one of the boundary's several).
        let fixed = |name: &str| self.fixed_default.as_deref() == Some(name);
        let defaults: Vec<(&Column, Field)> = self
            .scope
            .columns()
            .into_iter()
            .filter(|(c, field)| *field != Field::Datasources && !fixed(&c.name))
            .collect();
        // A column this protection no longer scopes keeps no boundary default.
        for stale in existing
            .accessor_defaults
            .iter()
            .filter(|d| !fixed(d) && !defaults.iter().any(|(c, _)| &c.name == *d))
        {
            out.push(format!("ALTER TABLE {t} ALTER COLUMN {} DROP DEFAULT", quote_ident(stale)));
        }
        for (c, field) in defaults {
            out.push(format!(
                "ALTER TABLE {t} ALTER COLUMN {} SET DEFAULT {}",
                quote_ident(&c.name),
                super::scope::cast(Scope::accessor(field), c, false)
            ));
        }
        out.push(format!(
            "CREATE OR REPLACE TRIGGER {TRUNCATE_TRIGGER} BEFORE TRUNCATE ON {t} FOR EACH STATEMENT EXECUTE FUNCTION boundary.refuse_truncate()"
        ));
        // A partition's clone of its parent's guard follows the parent's.
        if existing.cascade_trigger != Some(Guard::Inherited) {
            out.push(format!(
                "CREATE OR REPLACE TRIGGER {CASCADE_TRIGGER} BEFORE UPDATE OR DELETE ON {t} FOR EACH ROW \
                 WHEN ({}) EXECUTE FUNCTION boundary.refuse_cross_tenant_change()",
                self.cascade_guard_condition()
            ));
        }
        match (self.shape, existing.insert_trigger) {
            (_, Some(Guard::Inherited)) => {}
            (Shape::Distributable, _) => out.push(format!(
                "CREATE OR REPLACE TRIGGER {INSERT_TRIGGER} BEFORE INSERT ON {t} FOR EACH ROW \
                 WHEN ({}) EXECUTE FUNCTION boundary.refuse_cross_tenant_change()",
                self.insert_guard_condition()
            )),
            (Shape::Restrictive, Some(Guard::Own)) => {
                out.push(format!("DROP TRIGGER {INSERT_TRIGGER} ON {t}"))
            }
            (Shape::Restrictive, None) => {}
        }
        out
    }
}

/// The statements `unprotect()` runs: drop what `protect()` created and still exists; RLS is
/// turned off only when no other policy remains on the table.
pub fn unprotect_statements(table: &str, existing: &Existing, other_policies_remain: bool) -> Vec<String> {
    let mut out: Vec<String> = existing.drop_policies(table).collect();
    out.extend(
        existing
            .accessor_defaults
            .iter()
            .map(|c| format!("ALTER TABLE {table} ALTER COLUMN {} DROP DEFAULT", quote_ident(c))),
    );
    if existing.truncate_trigger {
        out.push(format!("DROP TRIGGER {TRUNCATE_TRIGGER} ON {table}"));
    }
    if existing.cascade_trigger == Some(Guard::Own) {
        out.push(format!("DROP TRIGGER {CASCADE_TRIGGER} ON {table}"));
    }
    if existing.insert_trigger == Some(Guard::Own) {
        out.push(format!("DROP TRIGGER {INSERT_TRIGGER} ON {table}"));
    }
    out.push(format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"));
    if !other_policies_remain {
        out.push(format!("ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ProtectOptions {
        ProtectOptions {
            tenant_column: "tenant_id".into(),
            workspace_column: ColumnChoice::Auto,
            datasource_column: ColumnChoice::Off,
            user_column: ColumnChoice::Auto,
            write_roles: vec![Role::Owner, Role::Admin, Role::Member],
        }
    }

    fn plan(tenant_type: &str) -> ProtectPlan {
        ProtectPlan {
            table: "\"public\".\"tickets\"".into(),
            scope: Scope {
                tenant: Column { name: "tenant_id".into(), sql_type: tenant_type.into() },
                workspace: None,
                datasource: None,
                user: None,
            },
            options: options(),
            shape: Shape::Restrictive,
            fixed_default: None,
            row_rule: None,
        }
    }

    #[test]
    fn text_tenant_predicate_has_no_cast_and_no_subquery() {
        let p = plan("text");
        assert_eq!(p.row_predicate(), "\"tenant_id\" = boundary.tenant_id()");
        assert!(
            p.statements(&Existing::default()).iter().all(|s| !s.to_uppercase().contains("(SELECT")),
            "no subqueries"
        );
    }

    #[test]
    fn typed_tenant_columns_cast_the_accessor_not_the_column() {
        assert_eq!(
            plan("uuid").row_predicate(),
            "\"tenant_id\" = (boundary.tenant_id())::uuid \
             AND ((boundary.tenant_id())::uuid)::pg_catalog.text = boundary.tenant_id()"
        );
        assert_eq!(
            plan("character varying(12)").row_predicate(),
            "\"tenant_id\" = (boundary.tenant_id())::character varying(12) \
             AND ((boundary.tenant_id())::character varying(12))::pg_catalog.text = boundary.tenant_id()",
            "a tenant id the cast would cut matches nothing"
        );
    }

    #[test]
    fn all_scope_columns_and_write_roles() {
        let mut p = plan("text");
        p.scope.workspace = Some(Column { name: "workspace_id".into(), sql_type: "text".into() });
        p.scope.datasource = Some(Column { name: "source".into(), sql_type: "bigint".into() });
        p.scope.user = Some(Column { name: "owner \"x\"".into(), sql_type: "uuid".into() });
        assert_eq!(
            p.row_predicate(),
            "\"tenant_id\" = boundary.tenant_id() AND \"workspace_id\" = boundary.workspace_id() \
             AND \"source\" = ANY ((boundary.datasource_ids())::bigint[]) \
             AND ((boundary.datasource_ids())::bigint[])::pg_catalog.text[] = boundary.datasource_ids() \
             AND \"owner \"\"x\"\"\" = (boundary.user_id())::uuid \
             AND ((boundary.user_id())::uuid)::pg_catalog.text = boundary.user_id()"
        );
        assert_eq!(p.write_check(), "boundary.role() = ANY ('{owner,admin,member}'::text[])");
        let ddl = p.statements(&Existing::default());
        assert!(ddl.contains(&"ALTER TABLE \"public\".\"tickets\" ALTER COLUMN \"owner \"\"x\"\"\" SET DEFAULT (boundary.user_id())::uuid".to_string()));
        assert!(!ddl.iter().any(|s| s.contains("\"source\" SET DEFAULT")), "no default for datasource");
    }

    /// Citus copies policies without AS RESTRICTIVE: every copy must then still mean the same,
    /// and no policy may admit a row by itself.
    #[test]
    fn the_distributable_shape_means_the_same_when_every_policy_is_permissive() {
        let p = ProtectPlan {
            shape: Shape::Distributable,
            fixed_default: Some("tenant_id".into()),
            ..plan("text")
        };
        let existing = Existing { accessor_defaults: vec!["tenant_id".into()], ..Existing::default() };
        let ddl = p.statements(&existing);
        let policies: Vec<&String> = ddl.iter().filter(|s| s.starts_with("CREATE POLICY")).collect();
        assert_eq!(policies.len(), POLICIES.len());
        assert!(
            policies.iter().all(|s| s.contains(" AS PERMISSIVE ") && !s.contains("RESTRICTIVE")),
            "{policies:?}"
        );
        assert_eq!(
            policies[0],
            "CREATE POLICY boundary_allow ON \"public\".\"tickets\" AS PERMISSIVE FOR ALL \
             USING (NOT boundary.installed()) WITH CHECK (NOT boundary.installed())"
        );
        for (policy, predicate) in [
            (SELECT_POLICY, "USING (\"tenant_id\" = boundary.tenant_id())"),
            (DELETE_POLICY, "boundary.role() = ANY"),
        ] {
            let create =
                policies.iter().find(|s| s.starts_with(&format!("CREATE POLICY {policy} "))).unwrap();
            assert!(create.contains(predicate), "{create}");
        }
        assert!(
            !ddl.iter().any(|s| s.contains("ALTER COLUMN \"tenant_id\"")),
            "Citus refuses to change the distribution column's default: it is left as it is"
        );
        // Rows Citus copies into a node's own shards skip row level security: the insert guard
        // refuses those outside the boundary, with the insert policy's own predicate.
        assert_eq!(
            ddl.last().unwrap(),
            "CREATE OR REPLACE TRIGGER boundary_refuse_insert BEFORE INSERT ON \"public\".\"tickets\" FOR EACH ROW \
             WHEN (NOT boundary.current_role_bypasses_rls() AND NOT coalesce(boundary.is_active() \
             AND NEW.\"tenant_id\" = boundary.tenant_id() AND boundary.role() = ANY ('{owner,admin,member}'::text[]), \
             false)) EXECUTE FUNCTION boundary.refuse_cross_tenant_change()"
        );
        // Protected again in the restrictive shape (Citus gone), the guard goes.
        let guarded = Existing { insert_trigger: Some(Guard::Own), ..existing };
        assert!(plan("text")
            .statements(&guarded)
            .contains(&"DROP TRIGGER boundary_refuse_insert ON \"public\".\"tickets\"".to_string()));
        assert!(!plan("text").statements(&Existing::default()).iter().any(|s| s.contains(INSERT_TRIGGER)));
    }

    #[test]
    fn statements_are_complete_and_ordered() {
        let fresh = plan("text").statements(&Existing::default());
        assert!(!fresh.iter().any(|s| s.starts_with("DROP")), "nothing to drop on a fresh table");
        let existing = Existing {
            policies: POLICIES.iter().map(|p| p.to_string()).collect(),
            truncate_trigger: true,
            cascade_trigger: Some(Guard::Own),
            insert_trigger: None,
            accessor_defaults: vec!["tenant_id".into(), "workspace_id".into()],
        };
        let ddl = plan("text").statements(&existing);
        assert_eq!(ddl[0], "ALTER TABLE \"public\".\"tickets\" ENABLE ROW LEVEL SECURITY");
        assert_eq!(ddl[1], "ALTER TABLE \"public\".\"tickets\" FORCE ROW LEVEL SECURITY");
        for policy in POLICIES {
            assert_eq!(ddl.iter().filter(|s| s.starts_with(&format!("CREATE POLICY {policy} "))).count(), 1);
            let drop = ddl
                .iter()
                .position(|s| s == &format!("DROP POLICY {policy} ON \"public\".\"tickets\""))
                .unwrap();
            let create = ddl.iter().position(|s| s.starts_with(&format!("CREATE POLICY {policy} "))).unwrap();
            assert!(drop < create);
        }
        assert!(
            ddl.contains(
                &"ALTER TABLE \"public\".\"tickets\" ALTER COLUMN \"workspace_id\" DROP DEFAULT".to_string()
            ),
            "the plan no longer scopes workspace_id, so its boundary default goes"
        );
        assert!(ddl.contains(
            &"CREATE POLICY boundary_update ON \"public\".\"tickets\" AS RESTRICTIVE FOR UPDATE \
             USING (\"tenant_id\" = boundary.tenant_id()) WITH CHECK (\"tenant_id\" = boundary.tenant_id() \
             AND boundary.role() = ANY ('{owner,admin,member}'::text[]))"
                .to_string()
        ));
        assert!(ddl.contains(&"CREATE OR REPLACE TRIGGER boundary_refuse_truncate BEFORE TRUNCATE ON \"public\".\"tickets\" FOR EACH STATEMENT EXECUTE FUNCTION boundary.refuse_truncate()".to_string()));
        assert_eq!(
            ddl.last().unwrap(),
            "CREATE OR REPLACE TRIGGER boundary_refuse_cascade BEFORE UPDATE OR DELETE ON \"public\".\"tickets\" \
             FOR EACH ROW WHEN (pg_catalog.pg_trigger_depth() > 0 AND NOT CASE WHEN boundary.is_active() \
             THEN coalesce(OLD.\"tenant_id\" = boundary.tenant_id(), false) ELSE boundary.outer_role_bypasses_rls() END) \
             EXECUTE FUNCTION boundary.refuse_cross_tenant_change()"
        );
        let partition = Existing { cascade_trigger: Some(Guard::Inherited), ..existing };
        assert!(
            !plan("text").statements(&partition).iter().any(|s| s.contains(CASCADE_TRIGGER)),
            "a partition keeps the clone of its parent's guard"
        );
    }

    #[test]
    fn options_round_trip_through_the_policy_comment() {
        let mut o = options();
        o.datasource_column = ColumnChoice::Named("it's \\ \"odd\"".into());
        let comment = o.to_comment();
        assert_eq!(ProtectOptions::from_comment(&comment), Some(o.clone()));
        assert_eq!(ProtectOptions::from_comment("someone else's comment"), None);
        let statement = plan("text")
            .statements(&Existing::default())
            .into_iter()
            .find(|s| s.starts_with("COMMENT ON POLICY"))
            .unwrap();
        assert!(statement.ends_with(&quote_literal(&options().to_comment())));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b'"), "E'a\\\\b'''");
    }

    #[test]
    fn column_arguments() {
        assert_eq!(ColumnChoice::from_argument("workspace_column", None), Ok(ColumnChoice::Auto));
        assert_eq!(ColumnChoice::from_argument("workspace_column", Some("")), Ok(ColumnChoice::Off));
        assert_eq!(
            ColumnChoice::from_argument("workspace_column", Some("ws")),
            Ok(ColumnChoice::Named("ws".into()))
        );
        assert_eq!(
            ColumnChoice::from_argument("workspace_column", Some(&"w".repeat(64))),
            Err("workspace_column is 64 bytes long; PostgreSQL identifiers are at most 63".into())
        );
    }

    #[test]
    fn unprotect_undoes_protect() {
        let existing = Existing {
            policies: POLICIES.iter().map(|p| p.to_string()).collect(),
            truncate_trigger: true,
            cascade_trigger: Some(Guard::Own),
            insert_trigger: Some(Guard::Own),
            accessor_defaults: vec!["tenant_id".into()],
        };
        let ddl = unprotect_statements("\"public\".\"t\"", &existing, false);
        assert_eq!(ddl.len(), POLICIES.len() + 6);
        assert!(ddl.contains(&"DROP TRIGGER boundary_refuse_cascade ON \"public\".\"t\"".to_string()));
        assert!(ddl.contains(&"DROP TRIGGER boundary_refuse_insert ON \"public\".\"t\"".to_string()));
        let partition = Existing { cascade_trigger: Some(Guard::Inherited), ..existing.clone() };
        assert!(
            !unprotect_statements("\"public\".\"t\"", &partition, false)
                .iter()
                .any(|s| s.contains(CASCADE_TRIGGER)),
            "a partition's clone goes with its parent's guard"
        );
        assert!(
            ddl.contains(&"ALTER TABLE \"public\".\"t\" ALTER COLUMN \"tenant_id\" DROP DEFAULT".to_string())
        );
        assert!(ddl.contains(&"DROP TRIGGER boundary_refuse_truncate ON \"public\".\"t\"".to_string()));
        assert_eq!(ddl.last().unwrap(), "ALTER TABLE \"public\".\"t\" DISABLE ROW LEVEL SECURITY");
        let partial = Existing { policies: vec![SELECT_POLICY.into()], ..Existing::default() };
        let keep = unprotect_statements("\"public\".\"t\"", &partial, true);
        assert_eq!(
            keep,
            [
                "DROP POLICY boundary_select ON \"public\".\"t\"",
                "ALTER TABLE \"public\".\"t\" NO FORCE ROW LEVEL SECURITY"
            ]
        );
    }
}
