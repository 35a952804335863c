//! Table names as Londiste keeps them: fully qualified `schema.table`, unquoted, with
//! `public` for a bare name (what `londiste.make_fqname` does on the server), quoted for SQL
//! only when a statement is built, and matched by shell-style globs for `add-table`.

use crate::error::{LondisteError, Result};
use strata_pgclient::quote_ident;

/// `schema.table` for a name given with or without its schema.
pub fn fq_name(name: &str) -> String {
    if name.contains('.') {
        name.to_string()
    } else {
        format!("public.{name}")
    }
}

/// The schema and table of a fully qualified name (split at the first dot, as londiste does).
pub fn split(fq: &str) -> (&str, &str) {
    fq.split_once('.').unwrap_or(("public", fq))
}

/// `"schema"."table"` for statements.
pub fn quote_fq(fq: &str) -> String {
    let (schema, table) = split(fq);
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// Rejects names that cannot be tables (empty parts, NUL) before any SQL runs.
pub fn check_table(name: &str) -> Result<()> {
    let fq = fq_name(name);
    let (schema, table) = split(&fq);
    if schema.is_empty() || table.is_empty() || name.contains('\0') || name.len() > 400 {
        return Err(LondisteError::BadInput(format!(
            "invalid table name {name:?}: use table or schema.table"
        )));
    }
    Ok(())
}

/// Whether a user's argument is a glob (`*`, `?`, `[`).
pub fn is_glob(arg: &str) -> bool {
    arg.contains(['*', '?', '['])
}

/// The names among `candidates` that `args` select: each argument is a name or a glob over
/// fully qualified names (`public.*`, `*.log_*`, a bare `t*` means `public.t*`). An
/// argument that matches nothing is an error, so a typo never passes silently.
pub fn expand(args: &[String], candidates: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for arg in args {
        check_table(arg)?;
        let fq = fq_name(arg);
        let found: Vec<String> = if is_glob(arg) {
            let pattern = glob::Pattern::new(&fq)
                .map_err(|e| LondisteError::BadInput(format!("bad table pattern {arg:?}: {e}")))?;
            candidates
                .iter()
                .filter(|c| pattern.matches(c))
                .cloned()
                .collect()
        } else {
            candidates.iter().filter(|c| **c == fq).cloned().collect()
        };
        if found.is_empty() {
            return Err(LondisteError::BadInput(format!("no table matches {arg:?}")));
        }
        for name in found {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_qualified_and_quoted() {
        assert_eq!(fq_name("t"), "public.t");
        assert_eq!(fq_name("s.t"), "s.t");
        assert_eq!(quote_fq("s.We\"ird"), "\"s\".\"We\"\"ird\"");
        assert_eq!(split("a.b.c"), ("a", "b.c"));
        assert!(check_table("").is_err());
        assert!(check_table(".t").is_err());
        assert!(check_table("s.").is_err());
    }

    #[test]
    fn globs_select_and_unmatched_arguments_fail() {
        let all = v(&["public.a1", "public.a2", "public.b", "log.a1"]);
        assert_eq!(
            expand(&v(&["a*"]), &all).unwrap(),
            v(&["public.a1", "public.a2"])
        );
        assert_eq!(
            expand(&v(&["*.a1", "b"]), &all).unwrap(),
            v(&["public.a1", "log.a1", "public.b"])
        );
        assert_eq!(
            expand(&v(&["b", "public.b"]), &all).unwrap(),
            v(&["public.b"])
        );
        assert!(expand(&v(&["zz*"]), &all).unwrap_err().is_bad_input());
        assert!(expand(&v(&["c"]), &all).is_err());
        assert!(expand(&v(&["[x"]), &all).is_err());
    }
}
