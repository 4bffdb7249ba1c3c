//! What a boundary may see of a protected table, as SQL: one predicate builder for the
//! generated policies (which compare the scope columns with the accessors) and for
//! vector_search (which compares them with bound parameters), so the two can never disagree.
//!
//! Plain comparisons and function calls, no subqueries (Citus rejects them in policies); any
//! cast is on the value, never on the column, so an index on the column serves the predicate.
//! A value cast to a column type other than text must come back as the same text, or nothing
//! matches: a cast that truncates (varchar(n)), folds case (uuid) or reformats ('042' as bigint)
//! would otherwise make two different ids one. That check reads no column, so PostgreSQL
//! evaluates it once per statement (a one-time filter), not per row.

use crate::pg::catalog::{quote_ident, Column};

/// A boundary field a scope column is compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Tenant,
    Workspace,
    /// The boundary's allowed datasources: the column must be one of them.
    Datasources,
    User,
}

/// The columns a protected table is scoped by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub tenant: Column,
    pub workspace: Option<Column>,
    pub datasource: Option<Column>,
    pub user: Option<Column>,
}

/// `value` (a text expression) as `column`'s type; also what a column's boundary default is.
pub fn cast(value: &str, column: &Column, array: bool) -> String {
    match (column.sql_type.as_str(), array) {
        ("text", _) => value.to_string(),
        (sql_type, false) => format!("({value})::{sql_type}"),
        (sql_type, true) => format!("({value})::{sql_type}[]"),
    }
}

impl Scope {
    /// The scope columns with the field each is compared with, tenant first.
    pub fn columns(&self) -> Vec<(&Column, Field)> {
        [
            (Some(&self.tenant), Field::Tenant),
            (self.workspace.as_ref(), Field::Workspace),
            (self.datasource.as_ref(), Field::Datasources),
            (self.user.as_ref(), Field::User),
        ]
        .into_iter()
        .filter_map(|(column, field)| column.map(|c| (c, field)))
        .collect()
    }

    /// The accessor that reads `field` from the current boundary.
    pub fn accessor(field: Field) -> &'static str {
        match field {
            Field::Tenant => "boundary.tenant_id()",
            Field::Workspace => "boundary.workspace_id()",
            Field::Datasources => "boundary.datasource_ids()",
            Field::User => "boundary.user_id()",
        }
    }

    /// Every scope column equals the boundary's value (datasource: is one of the boundary's
    /// datasources), where `value` gives each field as a text (or, for datasources, text[])
    /// SQL expression.
    pub fn predicate(&self, value: impl Fn(Field) -> String) -> String {
        self.predicate_on("", value)
    }

    /// [`Self::predicate`] on the columns of a named row, e.g. `OLD.` in a trigger's WHEN.
    pub fn predicate_on(&self, row: &str, value: impl Fn(Field) -> String) -> String {
        self.columns()
            .into_iter()
            .map(|(column, field)| {
                let value = value(field);
                let array = field == Field::Datasources;
                let typed = cast(&value, column, array);
                let comparison = if array {
                    format!("{row}{} = ANY ({typed})", quote_ident(&column.name))
                } else {
                    format!("{row}{} = {typed}", quote_ident(&column.name))
                };
                if column.sql_type == "text" {
                    comparison
                } else {
                    let text = if array { "pg_catalog.text[]" } else { "pg_catalog.text" };
                    format!("{comparison} AND ({typed})::{text} = {value}")
                }
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, sql_type: &str) -> Column {
        Column { name: name.into(), sql_type: sql_type.into() }
    }

    fn accessor(field: Field) -> String {
        Scope::accessor(field).into()
    }

    #[test]
    fn text_columns_compare_without_a_cast() {
        let scope =
            Scope { tenant: column("tenant_id", "text"), workspace: None, datasource: None, user: None };
        assert_eq!(scope.predicate(accessor), "\"tenant_id\" = boundary.tenant_id()");
    }

    #[test]
    fn typed_columns_cast_the_value_and_quote_the_column() {
        let scope = Scope {
            tenant: column("tenant_id", "uuid"),
            workspace: Some(column("workspace_id", "text")),
            datasource: Some(column("source", "bigint")),
            user: Some(column("owner \"x\"", "integer")),
        };
        assert_eq!(
            scope.predicate(accessor),
            "\"tenant_id\" = (boundary.tenant_id())::uuid \
             AND ((boundary.tenant_id())::uuid)::pg_catalog.text = boundary.tenant_id() \
             AND \"workspace_id\" = boundary.workspace_id() \
             AND \"source\" = ANY ((boundary.datasource_ids())::bigint[]) \
             AND ((boundary.datasource_ids())::bigint[])::pg_catalog.text[] = boundary.datasource_ids() \
             AND \"owner \"\"x\"\"\" = (boundary.user_id())::integer \
             AND ((boundary.user_id())::integer)::pg_catalog.text = boundary.user_id()"
        );
        let params = scope.predicate(|f| match f {
            Field::Tenant => "$2::text".into(),
            Field::Workspace => "$3::text".into(),
            Field::Datasources => "$4::text[]".into(),
            Field::User => "$5::text".into(),
        });
        assert_eq!(
            params,
            "\"tenant_id\" = ($2::text)::uuid AND (($2::text)::uuid)::pg_catalog.text = $2::text \
             AND \"workspace_id\" = $3::text \
             AND \"source\" = ANY (($4::text[])::bigint[]) \
             AND (($4::text[])::bigint[])::pg_catalog.text[] = $4::text[] \
             AND \"owner \"\"x\"\"\" = ($5::text)::integer AND (($5::text)::integer)::pg_catalog.text = $5::text"
        );
    }
}
