//! Architecture invariants, checked by reading the source (as rust-analyzer's tidy tests do), so
//! that they cannot rot. Each failure names the file, the line and the rule it breaks.
//!
//! The library's files are those `src/lib.rs` reaches through `mod` declarations; the binary
//! (`src/main.rs` and the modules it declares) is not checked. A file's references are the
//! `crate::`, `super::` and `self::` paths it names, in `use` items (brace groups expanded) and
//! inline, plus `use` paths and inline paths that start with one of its own child modules.
//! Comments, strings and the `#[cfg(test)] mod … { … }` block are not read: the invariants are
//! about the code that ships.
//!
//! A path resolves to the deepest file that defines a prefix of it (`src/a/b.rs` or
//! `src/a/b/mod.rs`). **The rule for parent modules:**
//! - a `pub use` (of any visibility) only re-exports: it adds no edge of its own, and a path that
//!   reaches an item a module re-exports is followed to the file the re-export names; `mod`
//!   declarations add no edge either;
//! - an edge from a `mod.rs` down into its own directory is not counted. A directory module's
//!   `mod.rs` is its facade: it declares, re-exports, wires or dispatches to its children, and
//!   it may define what they share (the generated `pb` types of `api/`, the `IV` of
//!   `mining/sha256d/`), which children use through an upward edge that does count.
//!
//! So within a directory the `mod.rs` sits below its children, and a cycle between sibling files
//! or across modules is reported, also when it passes through a `mod.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A library source file, with its comments, strings and unit tests blanked out.
struct SourceFile {
    /// Path from the package root, e.g. `src/sched/scheduler.rs`.
    rel: String,
    /// Its module path, e.g. `["sched", "scheduler"]`.
    module: Vec<String>,
    /// The original text, for messages.
    text: String,
    /// The text with comments, strings and `#[cfg(test)]` modules replaced by spaces.
    code: String,
}

/// A path a file names.
struct Reference {
    /// Byte offset of the path's last segment in the file.
    at: usize,
    /// The path as written (`crate::a::b`).
    written: String,
    /// The absolute module path it denotes (crate-relative, no `crate`), when it is internal.
    absolute: Option<Vec<String>>,
    /// Whether it is the target of a `pub use` (a re-export).
    reexport: bool,
}

/// Where a rule was broken.
struct Violation {
    rel: String,
    line: usize,
    source: String,
    rule: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: `{}`: {}",
            self.rel, self.line, self.source, self.rule
        )
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Replaces comments, string and char literals with spaces, keeping newlines (and offsets).
fn blank_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let prev_ident = i > 0 && ident(b[i - 1]);
        if b[i..].starts_with(b"//") {
            let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 1;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 1;
                }
                j += 1;
            }
            blank(&mut out, i, j);
            i = j;
        } else if !prev_ident && (b[i] == b'r' || b[i..].starts_with(b"br")) && raw_start(b, i) {
            let start = if b[i] == b'b' { i + 2 } else { i + 1 };
            let hashes = b[start..].iter().take_while(|&&c| c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = start + hashes + 1;
            let end = text[body..]
                .find(&close)
                .map_or(b.len(), |n| body + n + close.len());
            blank(&mut out, body, end - close.len());
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j);
            i = j + 1;
        } else if b[i] == b'\'' {
            i = skip_char_literal(text, i, &mut out);
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

/// Whether a raw string literal (`r"`, `r#"`, `br"`) starts at `i`.
fn raw_start(b: &[u8], i: usize) -> bool {
    let start = if b[i] == b'b' { i + 2 } else { i + 1 };
    let hashes = b[start.min(b.len())..]
        .iter()
        .take_while(|&&c| c == b'#')
        .count();
    b.get(start + hashes) == Some(&b'"')
}

/// Blanks a char literal at `i` (a lifetime is left alone); returns where scanning resumes.
fn skip_char_literal(text: &str, i: usize, out: &mut [u8]) -> usize {
    let b = text.as_bytes();
    let end = if b.get(i + 1) == Some(&b'\\') {
        // An escape: the closing quote comes after the escaped character.
        b.get(i + 3..)
            .and_then(|rest| rest.iter().position(|&c| c == b'\''))
            .map(|n| i + 3 + n)
    } else {
        let len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
        (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 1 + len)
    };
    match end {
        Some(end) => {
            for c in &mut out[i + 1..end] {
                *c = b' ';
            }
            end + 1
        }
        None => i + 1,
    }
}

/// Blanks each `#[cfg(test)] mod name { … }` block.
fn blank_test_modules(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(n) = code[from..].find("#[cfg(test)]") {
        let at = from + n;
        from = at + 1;
        let rest = code[at + "#[cfg(test)]".len()..].trim_start();
        let Some(after_mod) = rest.strip_prefix("mod ") else {
            continue;
        };
        let Some(open) = after_mod.find(['{', ';']) else {
            continue;
        };
        if !after_mod[..open]
            .trim()
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let open = code.len() - after_mod.len() + open;
        if code.as_bytes()[open] != b'{' {
            continue;
        }
        let mut depth = 0;
        for (j, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                for c in &mut out[at..open + j + 1] {
                    if *c != b'\n' {
                        *c = b' ';
                    }
                }
                break;
            }
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

/// The `mod name;` declarations of a file (not inline `mod name { … }` modules).
fn declared_modules(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    for (end, terminator) in code.match_indices([';', '{', '}']) {
        let words: Vec<&str> = code[start..end].split_whitespace().collect();
        start = end + 1;
        if let (";", [.., "mod", name]) = (terminator, words.as_slice()) {
            if name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// The library's files, from `src/lib.rs` through its `mod` declarations.
fn library_files() -> Vec<SourceFile> {
    let mut files = Vec::new();
    let mut todo = vec![(PathBuf::from("src/lib.rs"), Vec::<String>::new())];
    while let Some((rel, module)) = todo.pop() {
        let text = std::fs::read_to_string(root().join(&rel))
            .unwrap_or_else(|e| panic!("reading {}: {e}", rel.display()));
        let code = blank_test_modules(&blank_comments_and_strings(&text));
        let is_dir_module = module.is_empty() || rel.ends_with("mod.rs");
        let dir = if is_dir_module {
            rel.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            rel.with_extension("")
        };
        for name in declared_modules(&code) {
            let flat = dir.join(format!("{name}.rs"));
            let nested = dir.join(&name).join("mod.rs");
            let child = if root().join(&flat).exists() {
                flat
            } else {
                nested
            };
            let mut m = module.clone();
            m.push(name);
            todo.push((child, m));
        }
        files.push(SourceFile {
            rel: rel.to_string_lossy().replace('\\', "/"),
            module,
            text,
            code,
        });
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    files
}

/// A token of a `use` tree, with its byte offset.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Sep,
    Open,
    Close,
    Comma,
    Star,
}

fn use_tokens(code: &str, base: usize) -> Vec<(Token, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let tok = match c {
            b'{' => Token::Open,
            b'}' => Token::Close,
            b',' => Token::Comma,
            b'*' => Token::Star,
            b':' if b.get(i + 1) == Some(&b':') => {
                out.push((Token::Sep, base + i));
                i += 2;
                continue;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let len = b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                out.push((Token::Word(code[i..i + len].to_string()), base + i));
                i += len;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push((tok, base + i));
        i += 1;
    }
    out
}

/// Expands a `use` tree into its leaf paths, each with the offset of its last segment.
fn expand_use(
    tokens: &[(Token, usize)],
    pos: &mut usize,
    prefix: &[String],
) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    // The path being read, and where its last segment is once it has one.
    let mut path = prefix.to_vec();
    let mut leaf: Option<usize> = None;
    while let Some((tok, at)) = tokens.get(*pos).cloned() {
        *pos += 1;
        match tok {
            Token::Word(w) if w == "as" => *pos += 1, // skips the alias
            Token::Word(w) if w == "self" && leaf.is_none() && !prefix.is_empty() => {
                leaf = Some(at);
            }
            Token::Word(w) => {
                path.push(w);
                leaf = Some(at);
            }
            Token::Star => leaf = Some(at),
            Token::Sep => {}
            Token::Open => {
                out.extend(expand_use(tokens, pos, &path));
                leaf = None;
            }
            Token::Comma | Token::Close => {
                if let Some(at) = leaf.take() {
                    out.push((path.clone(), at));
                }
                if tok == Token::Close {
                    return out;
                }
                path = prefix.to_vec();
            }
        }
    }
    if let Some(at) = leaf {
        out.push((path, at));
    }
    out
}

/// The module a path names from `file` (crate-relative), if it is a path into this crate.
fn absolute(
    file: &SourceFile,
    path: &[String],
    children: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut base = file.module.clone();
    let mut rest = path;
    match first.as_str() {
        "crate" => {
            base.clear();
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => {
            let mut child = base.clone();
            child.push(first.clone());
            if !children.contains(&child) {
                return None;
            }
        }
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Every path `file` names: its `use` items and its inline paths.
fn references(file: &SourceFile, modules: &BTreeSet<Vec<String>>) -> Vec<Reference> {
    let code = &file.code;
    let mut out = Vec::new();
    let mut inline = code.as_bytes().to_vec();
    for (start, end, reexport) in use_items(code) {
        let tokens = use_tokens(&code[start..end], start);
        let mut pos = 0;
        for (path, at) in expand_use(&tokens, &mut pos, &[]) {
            out.push(Reference {
                at,
                written: path.join("::"),
                absolute: absolute(file, &path, modules),
                reexport,
            });
        }
        inline[start..end].fill(b' ');
    }
    let inline = String::from_utf8(inline).expect("ASCII blanks");
    for (path, at) in inline_paths(&inline) {
        out.push(Reference {
            at,
            written: path.join("::"),
            absolute: absolute(file, &path, modules),
            reexport: false,
        });
    }
    out
}

/// The `use` items of a file: the byte range of each tree, and whether it is a re-export.
fn use_items(code: &str) -> Vec<(usize, usize, bool)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(n) = code[from..].find("use ") {
        let at = from + n;
        from = at + 4;
        let before = code[..at].trim_end();
        let boundary = at == 0
            || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_' || b[at - 1] == b':');
        let starts_item = before.is_empty()
            || before.ends_with([';', '{', '}', ']', ')'])
            || before.ends_with("pub");
        if !boundary || !starts_item {
            continue;
        }
        let Some(len) = code[at..].find(';') else {
            break;
        };
        let reexport =
            before.ends_with("pub") || (before.ends_with(')') && before.contains("pub("));
        out.push((at + 4, at + len, reexport && ends_with_visibility(before)));
        from = at + len;
    }
    out
}

/// Whether `before` ends with a visibility (`pub`, `pub(crate)`, `pub(super)`, `pub(in …)`).
fn ends_with_visibility(before: &str) -> bool {
    if before.ends_with("pub") {
        return true;
    }
    before
        .rfind("pub(")
        .is_some_and(|i| before[i..].ends_with(')') && !before[i..].contains(';'))
}

/// Inline paths: runs of `word::word…` not preceded by `::` or a word character.
fn inline_paths(code: &str) -> Vec<(Vec<String>, usize)> {
    let tokens = use_tokens(code, 0);
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts = matches!(tokens[i].0, Token::Word(_))
            && matches!(tokens.get(i + 1), Some((Token::Sep, _)))
            && !(i > 0 && tokens[i - 1].0 == Token::Sep)
            && !(tokens[i].1 > 0 && code.as_bytes()[tokens[i].1 - 1] == b'.');
        if !starts {
            i += 1;
            continue;
        }
        let mut path = Vec::new();
        let mut at = tokens[i].1;
        while let Some((Token::Word(w), a)) = tokens.get(i) {
            path.push(w.clone());
            at = *a;
            i += 1;
            if !matches!(tokens.get(i), Some((Token::Sep, _))) {
                break;
            }
            i += 1;
        }
        out.push((path, at));
    }
    out
}

/// The library: its files, their modules, their references and what each module re-exports.
struct Library {
    files: Vec<SourceFile>,
    by_module: BTreeMap<Vec<String>, usize>,
    refs: Vec<Vec<Reference>>,
    /// Per file: re-exported name → the absolute path it stands for.
    reexports: Vec<BTreeMap<String, Vec<String>>>,
}

impl Library {
    fn load() -> Self {
        let files = library_files();
        let by_module: BTreeMap<Vec<String>, usize> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.module.clone(), i))
            .collect();
        let modules: BTreeSet<Vec<String>> = by_module.keys().cloned().collect();
        let refs: Vec<Vec<Reference>> = files.iter().map(|f| references(f, &modules)).collect();
        let reexports = refs
            .iter()
            .map(|rs| {
                rs.iter()
                    .filter(|r| r.reexport)
                    .filter_map(|r| {
                        Some((r.absolute.as_ref()?.last()?.clone(), r.absolute.clone()?))
                    })
                    .collect()
            })
            .collect();
        Library {
            files,
            by_module,
            refs,
            reexports,
        }
    }

    /// The file that defines what `path` names, following re-exports, and the path it ends as.
    fn resolve(&self, path: &[String]) -> Option<(usize, Vec<String>)> {
        let mut path = path.to_vec();
        for _ in 0..8 {
            let (len, file) = (0..=path.len())
                .rev()
                .find_map(|n| Some((n, *self.by_module.get(&path[..n])?)))?;
            match path
                .get(len)
                .and_then(|name| self.reexports[file].get(name))
            {
                Some(target) if target[..] != path[..len + 1] => {
                    let mut next = target.clone();
                    next.extend(path[len + 1..].iter().cloned());
                    path = next;
                }
                _ => return Some((file, path)),
            }
        }
        None
    }

    fn violation(&self, file: usize, at: usize, rule: String) -> Violation {
        let f = &self.files[file];
        let line = f.text[..at].matches('\n').count() + 1;
        let source = f
            .text
            .lines()
            .nth(line - 1)
            .unwrap_or_default()
            .trim()
            .to_string();
        Violation {
            rel: f.rel.clone(),
            line,
            source,
            rule,
        }
    }

    /// The violations of references from files under `dir` (or every file if `dir` is empty)
    /// that `bad` flags; `bad` gets the absolute path (after following re-exports) and
    /// returns why it is forbidden.
    fn check(
        &self,
        dir: &str,
        skip: &[&str],
        bad: impl Fn(&[String]) -> Option<String>,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            if !f.rel.starts_with(dir) || skip.iter().any(|s| f.rel.starts_with(s)) {
                continue;
            }
            for r in &self.refs[i] {
                let Some(abs) = &r.absolute else { continue };
                let resolved = self.resolve(abs).map(|(_, p)| p);
                let why = bad(abs).or_else(|| resolved.as_deref().and_then(&bad));
                if let Some(why) = why {
                    out.push(self.violation(i, r.at, format!("{} ({})", why, r.written)));
                }
            }
        }
        out
    }

    /// The file-level import graph: for each edge, where it is first made.
    fn graph(&self) -> BTreeMap<usize, BTreeMap<usize, usize>> {
        let mut g: BTreeMap<usize, BTreeMap<usize, usize>> = BTreeMap::new();
        for (i, refs) in self.refs.iter().enumerate() {
            for r in refs.iter().filter(|r| !r.reexport) {
                let Some((to, _)) = r.absolute.as_deref().and_then(|a| self.resolve(a)) else {
                    continue;
                };
                // The crate root only declares modules; a mod.rs does not depend on its own
                // directory (see the rule at the top).
                let facade = self.files[i].rel.ends_with("/mod.rs")
                    && self.files[to]
                        .rel
                        .starts_with(self.files[i].rel.trim_end_matches("mod.rs"));
                if to != i && !self.files[to].module.is_empty() && !facade {
                    g.entry(i).or_default().entry(to).or_insert(r.at);
                }
            }
        }
        g
    }
}

fn assert_none(what: &str, violations: Vec<Violation>) {
    let msg: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(msg.is_empty(), "{what}:\n{}", msg.join("\n"));
}

fn starts_with(path: &[String], prefix: &[&str]) -> bool {
    path.len() >= prefix.len() && path.iter().zip(prefix).all(|(a, b)| a == b)
}

#[test]
fn only_the_api_knows_protobuf_and_tonic() {
    let lib = Library::load();
    const WIRE: [&str; 6] = [
        "tonic",
        "prost",
        "prost_types",
        "tonic_health",
        "tonic_reflection",
        "tonic_build",
    ];
    let mut v = Vec::new();
    for (i, f) in lib.files.iter().enumerate() {
        if f.rel.starts_with("src/api/") {
            continue;
        }
        // A device that speaks gRPC (Braiins OS+) has its own protobuf, in its driver and in its
        // emulator; neither may touch hearth's own API messages.
        let device_grpc = f.rel.starts_with("src/devices/braiins/")
            || f.rel == "src/emulate/braiins.rs"
            || f.rel == "src/emulate/bos_proto.rs";
        for r in &lib.refs[i] {
            let first = r.written.split("::").next().unwrap_or_default();
            let pb = r
                .absolute
                .as_deref()
                .is_some_and(|a| starts_with(a, &["api", "pb"]));
            if (WIRE.contains(&first) && !device_grpc) || pb {
                let why = "only src/api/ (and the binary) may use tonic, prost or the generated protobuf module";
                v.push(lib.violation(i, r.at, format!("{why} ({})", r.written)));
            }
        }
    }
    assert_none("transport outside src/api/", v);
}

#[test]
fn the_scheduler_knows_no_engine() {
    // The scheduler owns the Workload port: it may use itself and the power-target type.
    const ALLOWED: [&str; 2] = ["sched", "power"];
    let v = Library::load().check("src/sched/", &[], |p| {
        let top = p.first()?;
        (!ALLOWED.contains(&top.as_str())).then(|| {
            format!("src/sched/ may import only crate::sched and crate::power, not crate::{top}")
        })
    });
    assert_none(
        "the scheduler imports an engine, a surface or the daemon",
        v,
    );
}

#[test]
fn nothing_in_the_library_imports_the_daemon() {
    let v = Library::load().check("src/", &["src/daemon/", "src/daemon.rs"], |p| {
        starts_with(p, &["daemon"]).then(|| {
            "only the binary may import crate::daemon; surfaces use crate::ops and crate::status"
                .to_string()
        })
    });
    assert_none("the library imports the daemon", v);
}

#[test]
fn mining_names_no_device() {
    let v = Library::load().check("src/mining/", &[], |p| {
        starts_with(p, &["devices"]).then(|| {
            "mining/ owns the ASIC seam; the devices implement it, mining never names them"
                .to_string()
        })
    });
    assert_none("mining imports a device", v);
}

#[test]
fn drivers_and_emulators_share_no_code() {
    // A shared misunderstanding of a device's protocol must not pass both sides.
    let v = Library::load().check("src/devices/", &[], |p| {
        starts_with(p, &["emulate"])
            .then(|| "a device driver may not import its emulator (crate::emulate)".to_string())
    });
    assert_none("a driver imports an emulator", v);
    let v = Library::load().check("src/emulate/", &[], |p| {
        starts_with(p, &["devices"])
            .then(|| "an emulator may not import a driver (crate::devices)".to_string())
    });
    assert_none("an emulator imports a driver", v);
}

#[test]
fn source_files_import_each_other_without_cycles() {
    let lib = Library::load();
    let g = lib.graph();
    // Depth-first search; a back edge closes a cycle, printed edge by edge.
    let mut state = vec![0u8; lib.files.len()];
    let mut stack: Vec<usize> = Vec::new();
    let mut cycles = Vec::new();
    fn visit(
        n: usize,
        g: &BTreeMap<usize, BTreeMap<usize, usize>>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
        cycles: &mut Vec<Vec<usize>>,
    ) {
        state[n] = 1;
        stack.push(n);
        for &m in g.get(&n).into_iter().flat_map(|e| e.keys()) {
            match state[m] {
                0 => visit(m, g, state, stack, cycles),
                1 => {
                    let from = stack.iter().position(|&x| x == m).unwrap_or(0);
                    cycles.push(stack[from..].to_vec());
                }
                _ => {}
            }
        }
        stack.pop();
        state[n] = 2;
    }
    for n in 0..lib.files.len() {
        if state[n] == 0 {
            visit(n, &g, &mut state, &mut stack, &mut cycles);
        }
    }
    let mut v = Vec::new();
    for cycle in &cycles {
        let names: Vec<&str> = cycle.iter().map(|&i| lib.files[i].rel.as_str()).collect();
        for (k, &from) in cycle.iter().enumerate() {
            let to = cycle[(k + 1) % cycle.len()];
            let at = g[&from][&to];
            let rule = format!(
                "imports {} (cycle: {} -> {})",
                lib.files[to].rel,
                names.join(" -> "),
                names[0]
            );
            v.push(lib.violation(from, at, rule));
        }
    }
    assert_none("import cycles between source files", v);
}

#[test]
fn the_checker_reads_what_it_should() {
    // Guards the checker itself: multi-line brace groups, aliases, inline paths, comments.
    let file = SourceFile {
        rel: "src/x/y.rs".into(),
        module: vec!["x".into(), "y".into()],
        text: String::new(),
        code: blank_test_modules(&blank_comments_and_strings(
            "use crate::a::{\n    b::{C, D as E},\n    self,\n};\n// crate::no\nlet s = \"crate::no\";\nfn f() { super::z::g(); }\n#[cfg(test)]\nmod tests { use crate::no; }\n",
        )),
    };
    let modules = BTreeSet::new();
    let got: Vec<String> = references(&file, &modules)
        .iter()
        .filter_map(|r| Some(r.absolute.as_ref()?.join("::")))
        .collect();
    assert_eq!(got, ["a::b::C", "a::b::D", "a", "x::z::g"]);
}

/// Every module under `src/` (library and binary; not `lib.rs`, `main.rs` or test-only
/// `tests.rs` files), as `a::b`, with whether it is a folder.
fn source_modules() -> BTreeMap<String, bool> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, bool>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_stem().and_then(|n| n.to_str()).unwrap_or_default();
            let mut m = prefix.to_vec();
            if p.is_dir() {
                m.push(name.to_string());
                out.insert(m.join("::"), true);
                walk(&p, &m, out);
            } else if p.extension().is_some_and(|e| e == "rs")
                && !["lib", "main", "mod", "tests"].contains(&name)
            {
                m.push(name.to_string());
                out.insert(m.join("::"), false);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&root().join("src"), &[], &mut out);
    out
}

/// The backticked words of `text` (`` `a::b` `` gives `a::b`).
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[test]
fn the_code_map_matches_the_folders() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let map = doc
        .split("\n## Code map\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("ARCHITECTURE.md has a `## Code map` section");
    // The sections: heading paths and body text.
    let mut sections: Vec<(Vec<&str>, String)> = Vec::new();
    for part in map.split("\n### ").skip(1) {
        let (heading, body) = part.split_once('\n').unwrap_or((part, ""));
        sections.push((backticked(heading), body.to_string()));
    }
    let modules = source_modules();
    let mut problems = Vec::new();
    // Every heading names modules that exist.
    for (heads, _) in &sections {
        for h in heads {
            if !modules.contains_key(*h) {
                problems.push(format!(
                    "the code map names `{h}`, which is no module under src/"
                ));
            }
        }
    }
    for (module, &is_dir) in &modules {
        let headed = sections.iter().any(|(h, _)| h.contains(&module.as_str()));
        let (parent, leaf) = module.rsplit_once("::").unwrap_or(("", module));
        // A folder, and a top-level file, has a section of its own; a file in a folder is at
        // least named in its folder's section.
        let named = || {
            sections.iter().any(|(h, body)| {
                h.iter()
                    .any(|x| *x == parent || x.starts_with(&format!("{parent}::")))
                    && backticked(body)
                        .iter()
                        .any(|w| *w == leaf || *w == format!("{leaf}.rs") || *w == module.as_str())
            })
        };
        if !headed && (is_dir || parent.is_empty() || !named()) {
            problems.push(format!(
                "src/ has `{module}` ({}), which the code map does not {}",
                if is_dir { "a folder" } else { "a file" },
                if is_dir || parent.is_empty() {
                    "give a section"
                } else {
                    "name in its folder's section"
                }
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md's code map and src/ disagree:\n{}",
        problems.join("\n")
    );
}
