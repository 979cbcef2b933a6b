//! The CGMiner API's reply format, as cgminer's `api.c` prints it: a `STATUS` object (severity,
//! `When`, `Code`, `Msg`, `Description`) and a named section of objects, in JSON (closed by the
//! caller with `,"id":1}`) or in the `NAME=value,…|` text form a plain request gets. Numbers are
//! printed like C's `printf`, `inf` and `nan` included.

use super::model::c_float;

/// `Description` of every status (cgminer's `PACKAGE_STRING` on the Nano 3S firmware).
const DESCRIPTION: &str = "cgminer 4.11.1";

/// A value in a reply: a string (quoted in JSON) or a number as printed.
pub(crate) enum Val {
    S(String),
    N(String),
}

/// One reply object: named values in order.
#[derive(Default)]
pub(crate) struct Obj {
    items: Vec<(&'static str, Val)>,
    /// Close it with `,}` (a quirk seen in the field) in JSON.
    pub trailing_comma: bool,
}

impl Obj {
    pub fn s(mut self, k: &'static str, v: impl Into<String>) -> Self {
        self.items.push((k, Val::S(v.into())));
        self
    }
    pub fn n(mut self, k: &'static str, v: impl ToString) -> Self {
        self.items.push((k, Val::N(v.to_string())));
        self
    }
    /// A float printed with `decimals` places, as C's `%.Nf` does (`inf`, `nan`).
    pub fn f(self, k: &'static str, v: f64, decimals: usize) -> Self {
        self.n(k, c_float(v, decimals))
    }
}

/// The status part of every reply.
pub(crate) struct Status {
    pub severity: char,
    pub code: i32,
    pub msg: String,
}

impl Status {
    pub fn new(severity: char, code: i32, msg: impl Into<String>) -> Self {
        Self {
            severity,
            code,
            msg: msg.into(),
        }
    }
}

/// One command's answer: its status and, on success, its data section.
pub(crate) struct Answer {
    pub status: Status,
    section: Option<(&'static str, bool, Vec<Obj>)>,
}

impl Answer {
    pub fn status(s: Status) -> Self {
        Self {
            status: s,
            section: None,
        }
    }
    /// `text_prefix`: whether the text form names the section (`SUMMARY,`), as the firmware
    /// does for some commands only.
    pub fn with(s: Status, name: &'static str, text_prefix: bool, objs: Vec<Obj>) -> Self {
        Self {
            status: s,
            section: Some((name, text_prefix, objs)),
        }
    }
}

pub(crate) fn escape(s: &str, isjson: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' if isjson => out.push_str("\\\""),
            ',' | '|' | '=' if !isjson => {
                out.push('\\');
                out.push(c);
            }
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out
}

pub(crate) fn when() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn render_obj(out: &mut String, o: &Obj, isjson: bool) {
    if isjson {
        out.push('{');
    }
    for (i, (k, v)) in o.items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if isjson {
            out.push('"');
            out.push_str(k);
            out.push_str("\":");
        } else {
            out.push_str(k);
            out.push('=');
        }
        match v {
            Val::S(s) if isjson => {
                out.push('"');
                out.push_str(s);
                out.push('"');
            }
            Val::S(s) | Val::N(s) => out.push_str(s),
        }
    }
    if isjson {
        if o.trailing_comma {
            out.push(',');
        }
        out.push('}');
    } else {
        out.push('|');
    }
}

/// Renders one answer without the closing `,"id":1}` (JSON) — the firmware's `message()` plus
/// the section.
pub(crate) fn render(a: &Answer, isjson: bool) -> String {
    let mut st = Obj::default()
        .s("STATUS", a.status.severity.to_string())
        .n("When", when())
        .n("Code", a.status.code)
        .s("Msg", escape(&a.status.msg, isjson));
    // The firmware leaves the description out of "Invalid command", for random probes.
    if a.status.code != 14 {
        st = st.s("Description", escape(DESCRIPTION, isjson));
    }
    let mut out = String::new();
    if isjson {
        out.push_str("{\"STATUS\":[");
    }
    render_obj(&mut out, &st, isjson);
    if isjson {
        out.push(']');
    }
    if let Some((name, prefix, objs)) = &a.section {
        if isjson {
            out.push_str(",\"");
            out.push_str(name);
            out.push_str("\":[");
        } else if *prefix {
            out.push_str(name);
            out.push(',');
        }
        for (i, o) in objs.iter().enumerate() {
            if isjson && i > 0 {
                out.push(',');
            }
            render_obj(&mut out, o, isjson);
        }
        if isjson {
            out.push(']');
        }
    }
    out
}

/// A whole JSON reply to one command.
pub(crate) fn single(a: Answer) -> String {
    let mut s = render(&a, true);
    s.push_str(",\"id\":1}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_replies_escape_separators() {
        let a = Answer::status(Status::new(
            'E',
            120,
            "ASC 0 set failed: Unknown option: a,b",
        ));
        let t = render(&a, false);
        assert!(t.starts_with("STATUS=E,When="), "{t}");
        assert!(
            t.contains("Msg=ASC 0 set failed: Unknown option: a\\,b,"),
            "{t}"
        );
        assert!(t.ends_with('|'));
    }
}
