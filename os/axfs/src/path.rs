//! Paths on the volume: absolute, `/`-separated, resolved without leaving the root.

use alloc::vec::Vec;
use core::fmt;

/// The deepest path accepted (directories plus the final name).
pub const MAX_DEPTH: usize = 16;
/// The longest name of one path component, in bytes (a FAT long name's limit).
pub const MAX_NAME: usize = 255;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// It does not start with `/`.
    NotAbsolute,
    /// It has more than [`MAX_DEPTH`] components.
    TooDeep,
    /// One component is longer than [`MAX_NAME`] bytes.
    NameTooLong,
    /// One component has a character FAT does not allow in a name (a control
    /// character, `\`, `:`, `*`, `?`, `"`, `<`, `>`, `|`).
    BadCharacter,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAbsolute => write!(f, "paths start with '/' (e.g. /vms/linux.toml)"),
            Self::TooDeep => write!(f, "more than {MAX_DEPTH} directories deep"),
            Self::NameTooLong => write!(f, "a name is longer than {MAX_NAME} bytes"),
            Self::BadCharacter => write!(
                f,
                "a name has a character FAT does not allow (a control character or \\ : * ? \" < > |)"
            ),
        }
    }
}

/// Whether FAT allows `c` in a name (and it cannot rewrite a terminal line).
pub(crate) fn allowed(c: char) -> bool {
    !c.is_control() && !"/\\:*?\"<>|".contains(c)
}

/// The components of `path` from the root: empty components and `.` dropped, `..` taking
/// back the previous component (and staying at the root at the root).
pub fn components(path: &str) -> Result<Vec<&str>, PathError> {
    let rest = path.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut out = Vec::new();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            name => {
                if name.len() > MAX_NAME {
                    return Err(PathError::NameTooLong);
                }
                if !name.chars().all(allowed) {
                    return Err(PathError::BadCharacter);
                }
                if out.len() == MAX_DEPTH {
                    return Err(PathError::TooDeep);
                }
                out.push(name);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_root() {
        assert_eq!(components("/").unwrap(), Vec::<&str>::new());
        assert_eq!(components("/vms/x.toml").unwrap(), ["vms", "x.toml"]);
        assert_eq!(components("//vms/./x.toml/").unwrap(), ["vms", "x.toml"]);
        assert_eq!(components("/vms/../../../etc").unwrap(), ["etc"]);
        assert_eq!(components("/../..").unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn bad_paths_are_refused() {
        assert_eq!(components("vms/x.toml"), Err(PathError::NotAbsolute));
        assert_eq!(components(""), Err(PathError::NotAbsolute));
        assert_eq!(components("/a\u{1b}[2J"), Err(PathError::BadCharacter));
        assert_eq!(components("/a:b"), Err(PathError::BadCharacter));
        let long = alloc::format!("/{}", "a".repeat(256));
        assert_eq!(components(&long), Err(PathError::NameTooLong));
        let deep = "/a".repeat(MAX_DEPTH + 1);
        assert_eq!(components(&deep), Err(PathError::TooDeep));
        assert!(components(&"/a".repeat(MAX_DEPTH)).is_ok());
    }
}
