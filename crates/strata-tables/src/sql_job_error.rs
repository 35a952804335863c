//! Why a `[[tables.jobs]]` entry cannot run as written: its own module, so that the
//! crate's error type can name it without depending on the jobs themselves.

/// A `[[tables.jobs]]` entry that cannot run as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlJobError {
    /// An entry without a name.
    #[error("a [[tables.jobs]] entry needs a name")]
    NoName,
    /// A `refresh` that names no view (`schema.view`).
    #[error("tables job {job:?}: refresh: {source}")]
    BadView {
        /// The job's name.
        job: String,
        /// What is wrong with the view's name.
        source: crate::name::NameError,
    },
    /// Neither or both of `refresh` and `sql` (the job's name).
    #[error("tables job {0:?}: give either refresh = \"schema.view\" or sql = \"...\"")]
    NoStatement(String),
    /// Two entries of one name (the name).
    #[error("tables job {0:?} is defined twice")]
    DefinedTwice(String),
}
