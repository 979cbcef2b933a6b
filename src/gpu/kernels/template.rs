//! Expands the catalog's WGSL templates (`shaders/*.tmpl.wgsl`): a line that starts with `//#`
//! is a directive (`for NAME in A..B`, `if EXPR`, `else`, `end`), `//##` starts a template-only
//! comment, and `${EXPR}` in any other line is replaced by a string parameter or the value of
//! an integer expression (`+ - * / %`, parentheses, parameters and loop variables).

/// The value of a template parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// An integer: usable in expressions, `for` bounds and `if` (non-zero is true).
    Int(i64),
    /// Text, substituted verbatim by `${NAME}`.
    Str(&'a str),
}

/// A template that cannot be expanded, with its 1-based line.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("template line {line}: {msg}")]
pub(crate) struct TemplateError {
    line: usize,
    msg: String,
}

fn err(line: usize, msg: impl Into<String>) -> TemplateError {
    TemplateError {
        line,
        msg: msg.into(),
    }
}

/// A parsed template: text lines and the blocks of the directives.
enum Node<'a> {
    Text {
        line: usize,
        text: &'a str,
    },
    For {
        line: usize,
        var: &'a str,
        from: &'a str,
        to: &'a str,
        body: Vec<Node<'a>>,
    },
    If {
        line: usize,
        cond: &'a str,
        then: Vec<Node<'a>>,
        other: Vec<Node<'a>>,
    },
}

type Lines<'a> = std::iter::Enumerate<std::str::Lines<'a>>;

/// Expands `template` with `params` (each line of the result ends in `\n`).
pub(crate) fn expand<'a>(
    template: &'a str,
    params: &[(&'a str, Value<'a>)],
) -> Result<String, TemplateError> {
    let (nodes, stop) = parse(&mut template.lines().enumerate())?;
    if let Some((line, kw)) = stop {
        return Err(err(line, format!("`//# {kw}` without an open block")));
    }
    let mut env = params.to_vec();
    let mut out = String::new();
    render(&nodes, &mut env, &mut out)?;
    Ok(out)
}

/// Parses lines up to the end of the template or a closing `else`/`end`, which it returns.
#[allow(clippy::type_complexity)]
fn parse<'a>(
    lines: &mut Lines<'a>,
) -> Result<(Vec<Node<'a>>, Option<(usize, &'a str)>), TemplateError> {
    let mut nodes = Vec::new();
    while let Some((i, text)) = lines.next() {
        let line = i + 1;
        let t = text.trim_start();
        if t.starts_with("//##") {
            continue;
        }
        let Some(d) = t.strip_prefix("//#") else {
            nodes.push(Node::Text { line, text });
            continue;
        };
        let d = d.trim();
        let (kw, rest) = d.split_once(' ').unwrap_or((d, ""));
        match kw {
            "else" | "end" => return Ok((nodes, Some((line, kw)))),
            "for" => {
                let (var, range) = rest
                    .split_once(" in ")
                    .ok_or_else(|| err(line, "expected `//# for NAME in A..B`"))?;
                let (from, to) = range
                    .split_once("..")
                    .ok_or_else(|| err(line, "expected `//# for NAME in A..B`"))?;
                let (body, stop) = parse(lines)?;
                match stop {
                    Some((_, "end")) => {}
                    Some((l, _)) => return Err(err(l, "`else` inside a `for`")),
                    None => return Err(err(line, "`for` without `end`")),
                }
                nodes.push(Node::For {
                    line,
                    var: var.trim(),
                    from,
                    to,
                    body,
                });
            }
            "if" => {
                let (then, stop) = parse(lines)?;
                let other = match stop {
                    Some((_, "end")) => Vec::new(),
                    Some((l, _)) => match parse(lines)? {
                        (other, Some((_, "end"))) => other,
                        _ => return Err(err(l, "`else` without `end`")),
                    },
                    None => return Err(err(line, "`if` without `end`")),
                };
                nodes.push(Node::If {
                    line,
                    cond: rest,
                    then,
                    other,
                });
            }
            _ => return Err(err(line, format!("unknown directive `//# {d}`"))),
        }
    }
    Ok((nodes, None))
}

fn render<'a>(
    nodes: &[Node<'a>],
    env: &mut Vec<(&'a str, Value<'a>)>,
    out: &mut String,
) -> Result<(), TemplateError> {
    for node in nodes {
        match node {
            Node::Text { line, text } => substitute(text, env, *line, out)?,
            Node::For {
                line,
                var,
                from,
                to,
                body,
            } => {
                for v in eval(from, env, *line)?..eval(to, env, *line)? {
                    env.push((var, Value::Int(v)));
                    let r = render(body, env, out);
                    env.pop();
                    r?;
                }
            }
            Node::If {
                line,
                cond,
                then,
                other,
            } => match eval(cond, env, *line)? {
                0 => render(other, env, out)?,
                _ => render(then, env, out)?,
            },
        }
    }
    Ok(())
}

/// Appends `text` with its `${...}` replaced, and a newline.
fn substitute(
    mut text: &str,
    env: &[(&str, Value)],
    line: usize,
    out: &mut String,
) -> Result<(), TemplateError> {
    while let Some(at) = text.find("${") {
        out.push_str(&text[..at]);
        let after = &text[at + 2..];
        let close = after
            .find('}')
            .ok_or_else(|| err(line, "`${` without `}`"))?;
        let expr = after[..close].trim();
        match lookup(env, expr) {
            Some(Value::Str(s)) => out.push_str(s),
            _ => out.push_str(&eval(expr, env, line)?.to_string()),
        }
        text = &after[close + 1..];
    }
    out.push_str(text);
    out.push('\n');
    Ok(())
}

/// The innermost binding of `name`.
fn lookup<'a>(env: &[(&str, Value<'a>)], name: &str) -> Option<Value<'a>> {
    env.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The value of an integer expression.
fn eval(src: &str, env: &[(&str, Value)], line: usize) -> Result<i64, TemplateError> {
    let mut e = Expr {
        src: src.as_bytes(),
        pos: 0,
        env,
        line,
    };
    let v = e.sum()?;
    match e.peek() {
        None => Ok(v),
        Some(_) => Err(e.err("unexpected text")),
    }
}

/// A recursive-descent parser that evaluates as it goes.
struct Expr<'e> {
    src: &'e [u8],
    pos: usize,
    env: &'e [(&'e str, Value<'e>)],
    line: usize,
}

impl<'e> Expr<'e> {
    fn err(&self, what: &str) -> TemplateError {
        let src = String::from_utf8_lossy(self.src);
        err(self.line, format!("{what} at {} of `{src}`", self.pos))
    }

    /// The next non-blank byte, not consumed.
    fn peek(&mut self) -> Option<u8> {
        while self.src.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
        self.src.get(self.pos).copied()
    }

    fn sum(&mut self) -> Result<i64, TemplateError> {
        let mut v = self.product()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.pos += 1;
            let r = self.product()?;
            let w = if op == b'+' {
                v.checked_add(r)
            } else {
                v.checked_sub(r)
            };
            v = w.ok_or_else(|| self.err("overflow"))?;
        }
        Ok(v)
    }

    fn product(&mut self) -> Result<i64, TemplateError> {
        let mut v = self.atom()?;
        while let Some(op @ (b'*' | b'/' | b'%')) = self.peek() {
            self.pos += 1;
            let r = self.atom()?;
            let w = match op {
                b'*' => v.checked_mul(r),
                b'/' => v.checked_div(r),
                _ => v.checked_rem(r),
            };
            v = w.ok_or_else(|| self.err("overflow or division by zero"))?;
        }
        Ok(v)
    }

    fn atom(&mut self) -> Result<i64, TemplateError> {
        let start = self.pos;
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let v = self.sum()?;
                match self.peek() {
                    Some(b')') => {
                        self.pos += 1;
                        Ok(v)
                    }
                    _ => Err(self.err("expected `)`")),
                }
            }
            Some(c) if c.is_ascii_digit() => {
                let digits = self.take(|c| c.is_ascii_digit());
                digits.parse().map_err(|_| self.err("number too large"))
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let name = self.take(|c| c.is_ascii_alphanumeric() || c == b'_');
                match lookup(self.env, name) {
                    Some(Value::Int(v)) => Ok(v),
                    Some(Value::Str(_)) => Err(self.err(&format!("`{name}` is not a number"))),
                    None => Err(self.err(&format!("unknown name `{name}`"))),
                }
            }
            _ => {
                self.pos = start;
                Err(self.err("expected a number, a name or `(`"))
            }
        }
    }

    /// Consumes the run of bytes that match `f` (ASCII, so the slice is valid UTF-8).
    fn take(&mut self, f: impl Fn(u8) -> bool) -> &'e str {
        let (src, start) = (self.src, self.pos);
        while src.get(self.pos).is_some_and(|&c| f(c)) {
            self.pos += 1;
        }
        std::str::from_utf8(&src[start..self.pos]).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(t: &str, params: &[(&str, i64)]) -> Result<String, TemplateError> {
        let params: Vec<_> = params.iter().map(|&(n, v)| (n, Value::Int(v))).collect();
        expand(t, &params)
    }

    #[test]
    fn loops_conditions_and_substitutions_nest() {
        let t = "head ${N}\n//## dropped\n//# for i in 0..N\n  //# if i % 2\n\
                 odd ${i} ${(i + 1) * 10 - 1}\n  //# else\neven ${i / 2}\n  //# end\n//# end\nend";
        assert_eq!(
            ints(t, &[("N", 3)]).unwrap(),
            "head 3\neven 0\nodd 1 19\neven 1\nend\n"
        );
        let s = expand(
            "fn ${NAME}() -> ${T} { ${N * 2} }",
            &[
                ("NAME", Value::Str("f")),
                ("T", Value::Str("u32")),
                ("N", Value::Int(4)),
            ],
        );
        assert_eq!(s.unwrap(), "fn f() -> u32 { 8 }\n");
        assert_eq!(ints("//# for i in 2..2\nx\n//# end\n", &[]).unwrap(), "");
        assert_eq!(ints("${1 + 2 * 3 - 7 % 4}", &[]).unwrap(), "4\n");
    }

    #[test]
    fn malformed_templates_are_errors_with_their_line() {
        let line = |t: &str| ints(t, &[("N", 1)]).unwrap_err().line;
        assert_eq!(line("a\n//# for i in 0..N\nb"), 2);
        assert_eq!(line("a\n//# if N\nb\n//# else\nc"), 4);
        assert_eq!(line("//# end"), 1);
        assert_eq!(line("//# for i in 0..1\n//# else\n//# end"), 2);
        assert_eq!(line("//# while N"), 1);
        assert_eq!(line("x\n${M}"), 2);
        assert_eq!(line("${N / 0}"), 1);
        assert_eq!(line("${(N}"), 1);
        assert_eq!(line("${N"), 1);
        assert_eq!(line("//# for i 0..N\n//# end"), 1);
        let e = expand("${1 + S}", &[("S", Value::Str("s"))]).unwrap_err();
        assert!(e.to_string().contains("`S` is not a number"), "{e}");
    }
}
