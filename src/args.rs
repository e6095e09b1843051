//! Parsing a binary's flags without echoing a secret: clap's error for a rejected value repeats
//! the value, which for an internal token, a database URL (with its password) or an API key
//! would put the secret on the terminal and in whatever collects a container's output.

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// Flags whose values are never printed. Their environment-variable twins are covered too: clap
/// names the flag either way.
const SECRET_FLAGS: &[&str] = &["--internal-token", "--database-url", "--api-key"];

/// Parses the process's arguments as clap does, except that a rejected secret is reported
/// without its value. Exits (2) on error, as clap does, and prints help and version as asked.
pub fn parse<C: clap::Parser>() -> C {
    match C::try_parse() {
        Ok(parsed) => parsed,
        Err(e) => exit_with(e),
    }
}

fn exit_with(e: clap::Error) -> ! {
    if let Some(message) = redacted(&e) {
        eprintln!("{message}");
        std::process::exit(2);
    }
    e.exit()
}

/// The message for an error about a secret flag's value, without the value; `None` for any
/// other error, which clap prints as it is.
fn redacted(e: &clap::Error) -> Option<String> {
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg.clone(),
        _ => return None,
    };
    let flag = arg.split_whitespace().next().unwrap_or_default();
    if !SECRET_FLAGS.contains(&flag) {
        return None;
    }
    let reason = std::error::Error::source(e)
        .map(|source| format!(": {source}"))
        .unwrap_or_default();
    Some(format!(
        "error: invalid value for '{flag}' (not shown){reason}"
    ))
}

/// The contents of a file holding a secret (a Kubernetes Secret mounted as a file), without its
/// trailing newline; errors name the file, never its contents.
pub fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the secret file {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

/// Parses the secret in the file at `path` as a `T`; the error says which file, and why, but
/// repeats nothing of the contents.
pub fn parse_secret_file<T>(path: &std::path::Path) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    read_secret_file(path)?
        .parse()
        .map_err(|e| format!("the secret in {} is not valid: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Flags {
        #[arg(long)]
        internal_token: Option<crate::metadata::InternalToken>,
        #[arg(long)]
        database_url: Option<crate::database::DatabaseUrl>,
        #[arg(long, value_parser = crate::telemetry::parse_duration)]
        timeout: Option<std::time::Duration>,
    }

    fn error(args: &[&str]) -> clap::Error {
        <Flags as clap::Parser>::try_parse_from(args).unwrap_err()
    }

    #[test]
    fn rejected_secrets_are_not_echoed() {
        let token = "hunter2-is-not-a-token";
        let message = redacted(&error(&["x", "--internal-token", token])).unwrap();
        assert!(message.starts_with("error: invalid value for '--internal-token'"));
        assert!(!message.contains(token), "{message}");
        let url = "postgres://app:sup3rs3cret@";
        let message = redacted(&error(&["x", "--database-url", url])).unwrap();
        assert!(message.contains("invalid database URL"), "{message}");
        assert!(!message.contains("sup3rs3cret"), "{message}");
        // Other values are echoed as clap does: they help and hide nothing.
        assert!(redacted(&error(&["x", "--timeout", "soon"])).is_none());
    }
}
