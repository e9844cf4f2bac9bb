//! `docs/vm-config.md` against the code: the fields its tables list are the fields the
//! parser takes (learnt from the parser itself: its "unknown field" message lists every
//! field of a table), and the `ProblemKind` names its problem tables give are the enum's
//! variants.

use super::*;
use alloc::collections::BTreeSet;

const DOC: &str = include_str!("../../../../docs/vm-config.md");
const VALIDATE_RS: &str = include_str!("../validate.rs");

/// The fields of a table as the parser lists them when `text` puts an unknown field
/// `zz_unknown` in it: "expected one of `a`, `b`", "expected `a` or `b`", "expected `a`".
fn fields_of(text: &str) -> BTreeSet<String> {
    let message = parse_err(text).message;
    assert!(message.contains("zz_unknown"), "{message}\n{text}");
    let (_, expected) = message.split_once("expected").unwrap();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// `BASE` with `zz_unknown = 1` inserted after the first `anchor`, or appended with
/// `tail` when `anchor` is empty.
fn probe(anchor: &str, with: &str) -> String {
    let text = format!(
        "{BASE}\n[[links]]\nname = \"l\"\npeer = \"p\"\n\
         shmem = {{ gpa = 0x5000_0000, size = 0x1000 }}\n\
         doorbell = {{ base = 0x0a10_0000, irq = 50 }}\n\
         [[devices]]\nkind = \"virtio-blk\"\nbase = 0x0a00_0000\n\
         backing = {{ disk = \"d\", offset = 0, size = 512 }}\n"
    );
    assert!(text.contains(anchor), "{anchor}");
    text.replacen(anchor, &format!("{anchor}{with}"), 1)
}

/// The field tables of the doc: table name (`""` for the top level, `cpus`, `kernel`,
/// `kernel.initrd`, ...) to its fields. An inline table's fields are the names in the
/// `{ ... }` of its type column.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let fields = DOC
        .split_once("\n## Fields\n")
        .and_then(|(_, rest)| rest.split_once("\n## Errors\n"))
        .expect("docs/vm-config.md has `## Fields` then `## Errors`")
        .0;
    let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut table = None;
    for line in fields.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            table = Some(match heading {
                "Top level" => String::new(),
                h => h.trim_matches(|c| "`[]".contains(c)).to_string(),
            });
            continue;
        }
        let (Some(table), Some(row)) = (&table, line.strip_prefix("| `")) else {
            continue;
        };
        let (field, rest) = row.split_once('`').unwrap();
        tables
            .entry(table.clone())
            .or_default()
            .insert(field.to_string());
        let kind = rest.split('|').nth(1).unwrap_or("");
        for inline in kind.split("`{").skip(1) {
            let names = inline.split_once("}`").unwrap().0;
            let key = format!("{table}.{field}");
            for name in names.split(',') {
                tables
                    .entry(key.clone())
                    .or_default()
                    .insert(name.trim().to_string());
            }
        }
    }
    tables
}

#[test]
fn every_documented_field_is_parsed_and_every_parsed_field_documented() {
    let z = "zz_unknown = 1\n";
    let zi = "zz_unknown = 1, ";
    let parsed: BTreeMap<&str, BTreeSet<String>> = BTreeMap::from([
        ("", fields_of(&format!("{z}{BASE}"))),
        ("cpus", fields_of(&probe("[cpus]\n", z))),
        ("kernel", fields_of(&probe("[kernel]\n", z))),
        ("kernel.initrd", fields_of(&probe("initrd = { ", zi))),
        ("kernel.dtb", fields_of(&probe("dtb = { ", zi))),
        ("memory", fields_of(&probe("[[memory]]\n", z))),
        ("devices", fields_of(&probe("[[devices]]\n", z))),
        ("devices.backing", fields_of(&probe("backing = { ", zi))),
        ("passthrough", fields_of(&probe("[[passthrough]]\n", z))),
        ("unclaimed", fields_of(&probe("[unclaimed]\n", z))),
        ("links", fields_of(&probe("[[links]]\n", z))),
        ("links.shmem", fields_of(&probe("shmem = { ", zi))),
        ("links.doorbell", fields_of(&probe("doorbell = { ", zi))),
    ]);
    let documented = documented();
    let parsed_names: BTreeSet<&str> = parsed.keys().copied().collect();
    let documented_names: BTreeSet<&str> = documented.keys().map(String::as_str).collect();
    assert_eq!(
        documented_names, parsed_names,
        "docs/vm-config.md's field tables against the parser's tables"
    );
    for (table, fields) in &parsed {
        assert_eq!(
            &documented[*table], fields,
            "table `{table}`: docs/vm-config.md (left) against the parser (right)"
        );
    }
}

/// The variants of `ProblemKind`, read from its definition.
fn problem_kinds() -> BTreeSet<String> {
    let body = VALIDATE_RS
        .split_once("pub enum ProblemKind {\n")
        .and_then(|(_, rest)| rest.split_once("\n}\n"))
        .expect("validate.rs defines `pub enum ProblemKind`")
        .0;
    body.lines()
        .filter_map(|line| line.strip_prefix("    "))
        .filter(|line| line.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|line| {
            line.split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn every_problem_kind_is_documented_and_every_documented_one_exists() {
    let kinds = problem_kinds();
    assert!(kinds.len() > 30, "{kinds:?}");
    let errors = DOC
        .split_once("\n## Errors\n")
        .expect("docs/vm-config.md has `## Errors`")
        .1;
    // The last column of the tables whose header names `ProblemKind`, or the third
    // (the host rules' table has two more).
    let mut documented = BTreeSet::new();
    let mut column = None;
    for line in errors.lines() {
        if !line.starts_with('|') {
            column = None;
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let Some(at) = cells.iter().position(|c| *c == "`ProblemKind`") {
            column = Some(at);
            continue;
        }
        let Some(cell) = column.and_then(|at| cells.get(at)) else {
            continue;
        };
        for name in cell.split('`').skip(1).step_by(2) {
            let name = name.split([' ', '{']).next().unwrap();
            if !name.is_empty() {
                documented.insert(name.to_string());
            }
        }
    }
    let undocumented: Vec<_> = kinds.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&kinds).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "ProblemKind variants not in docs/vm-config.md's tables: {undocumented:?}; \
         named there but no variant: {unknown:?}"
    );
}
