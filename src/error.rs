//! One error type for the whole extension, each variant mapped to a real SQLSTATE.
//!
//! Inside the extension errors are [`BoundaryError`]s. A `#[pg_extern]` returns
//! [`SqlResult`]: pgrx raises its `Err(ErrorReport)` with the report's own SQLSTATE, DETAIL and
//! HINT (any other error type would become a bare SQLSTATE 22000, which tells a client nothing).

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundaryError {
    /// An accessor or protected read ran with no boundary on the transaction.
    NoBoundary,
    /// A session-scoped boundary outlived its token.
    BoundaryExpired { expired_at: i64 },
    /// The token itself was refused: malformed, unsigned, tampered, expired, unknown key, ...
    TokenRefused(String),
    /// As `TokenRefused`, with what the signer most likely did wrong.
    TokenRefusedWithHint { why: String, hint: String },
    /// The token verified but the registry says no (missing, revoked, or claims it exceeds).
    PrincipalRefused(String),
    /// A configuration switch forbids what was asked (e.g. session scope).
    NotAllowed { what: String, hint: String },
    /// Asked outside a transaction block where one is required.
    OutsideTransactionBlock(String),
    /// A caller-supplied argument is out of range or malformed.
    InvalidArgument(String),
    /// A value is larger than the extension stores.
    ValueTooLarge(String),
    /// A named object (signing key, principal) does not exist.
    UndefinedObject(String),
    /// A table lacks a column the caller named or protection needs.
    UndefinedColumn(String),
    /// A named object already exists.
    DuplicateObject(String),
    /// A required argument is NULL.
    NullArgument(String),
    /// A column has a type the operation cannot use.
    WrongType(String),
    /// The object is not ready for the operation (e.g. a table that is not protected).
    NotPrepared(String),
    /// As `NotPrepared`, with what to set up first.
    NotPreparedWithHint { what: String, hint: String },
    /// A tool asked for something outside the boundary: "resource public.tickets:7", "tool crm".
    /// The same for "belongs to another tenant" and "does not exist", so it is no oracle.
    OutsideBoundary(String),
    /// A job's snapshot no longer matches the registry (or expired); `reason` says what changed.
    JobRefused { reason: String },
    /// The operation must write, and the transaction cannot.
    ReadOnly(String),
    /// Another session holds what the operation needs (a job's run).
    Busy(String),
    /// Something that should not happen; reported instead of panicking.
    Internal(String),
}

impl BoundaryError {
    pub fn sqlstate(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            Self::NoBoundary
            | Self::BoundaryExpired { .. }
            | Self::PrincipalRefused(_)
            | Self::NotAllowed { .. }
            | Self::OutsideBoundary(_)
            | Self::JobRefused { .. } => ERRCODE_INSUFFICIENT_PRIVILEGE,
            Self::TokenRefused(_) | Self::TokenRefusedWithHint { .. } => {
                ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION
            }
            Self::OutsideTransactionBlock(_) => ERRCODE_NO_ACTIVE_SQL_TRANSACTION,
            Self::InvalidArgument(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            Self::ValueTooLarge(_) => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            Self::UndefinedObject(_) => ERRCODE_UNDEFINED_OBJECT,
            Self::UndefinedColumn(_) => ERRCODE_UNDEFINED_COLUMN,
            Self::DuplicateObject(_) => ERRCODE_DUPLICATE_OBJECT,
            Self::NullArgument(_) => ERRCODE_NULL_VALUE_NOT_ALLOWED,
            Self::WrongType(_) => ERRCODE_DATATYPE_MISMATCH,
            Self::NotPrepared(_) | Self::NotPreparedWithHint { .. } => {
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            Self::ReadOnly(_) => ERRCODE_READ_ONLY_SQL_TRANSACTION,
            Self::Busy(_) => ERRCODE_LOCK_NOT_AVAILABLE,
            Self::Internal(_) => ERRCODE_INTERNAL_ERROR,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoBoundary => {
                Some("Trusted code must call boundary.enter(token) inside the same transaction first.".into())
            }
            Self::BoundaryExpired { .. } => Some("Enter a fresh boundary with boundary.enter(token).".into()),
            Self::OutsideTransactionBlock(_) => Some(
                "Run BEGIN first (turn autocommit off in the driver), then enter and the queries it guards."
                    .into(),
            ),
            Self::NotAllowed { hint, .. }
            | Self::TokenRefusedWithHint { hint, .. }
            | Self::NotPreparedWithHint { hint, .. } => Some(hint.clone()),
            _ => None,
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            Self::JobRefused { reason } => Some(reason.clone()),
            _ => None,
        }
    }

    /// This error as PostgreSQL reports it: SQLSTATE, message, detail and hint.
    pub fn report(self) -> ErrorReport {
        let mut report = ErrorReport::new(self.sqlstate(), self.to_string(), "agent_boundary");
        if let Some(detail) = self.detail() {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report
    }

    /// Raise as a PostgreSQL ERROR, for the few places that cannot return one (a refusal
    /// recorded from inside another refusal, the event trigger's callback).
    pub fn raise(self) -> ! {
        self.report().report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }
}

impl fmt::Display for BoundaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBoundary => f.write_str("no agent boundary is set"),
            Self::BoundaryExpired { expired_at } => {
                write!(f, "agent boundary expired (exp {expired_at})")
            }
            Self::TokenRefused(why) | Self::TokenRefusedWithHint { why, .. } => {
                write!(f, "agent boundary token refused: {why}")
            }
            Self::PrincipalRefused(why) => write!(f, "agent boundary refused: {why}"),
            Self::NotAllowed { what, .. } | Self::NotPreparedWithHint { what, .. } => f.write_str(what),
            Self::OutsideBoundary(what) => write!(f, "{what} is outside current boundary"),
            Self::JobRefused { .. } => f.write_str("resume refused: permissions changed during execution"),
            Self::OutsideTransactionBlock(why)
            | Self::InvalidArgument(why)
            | Self::ValueTooLarge(why)
            | Self::UndefinedObject(why)
            | Self::UndefinedColumn(why)
            | Self::DuplicateObject(why)
            | Self::NullArgument(why)
            | Self::WrongType(why)
            | Self::NotPrepared(why)
            | Self::ReadOnly(why)
            | Self::Busy(why)
            | Self::Internal(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BoundaryError {}

pub type Result<T> = std::result::Result<T, BoundaryError>;

/// What every `#[pg_extern]` returns; `?` turns a [`BoundaryError`] into its report. Functions
/// returning rows spell it `std::result::Result<TableIterator<..>, ErrorReport>`: pgrx reads
/// set-returning signatures by their syntax and does not see through the alias.
pub type SqlResult<T> = std::result::Result<T, ErrorReport>;

impl From<BoundaryError> for ErrorReport {
    fn from(e: BoundaryError) -> Self {
        e.report()
    }
}

impl From<pgrx::spi::SpiError> for BoundaryError {
    fn from(e: pgrx::spi::SpiError) -> Self {
        Self::Internal(format!("agent_boundary internal query failed: {e}"))
    }
}
