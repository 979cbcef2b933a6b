//! Bound every loop of an untrusted WGSL shader with one shared per-invocation budget.
//!
//! The transformation works on naga IR: every `Statement::Loop` (WGSL `loop`,
//! `for` and `while` all lower to it) gets, at the start of its body,
//!
//! ```wgsl
//! if (hearth_loop_budget >= MAX) { break; }
//! hearth_loop_budget = hearth_loop_budget + 1u;
//! ```
//!
//! where `hearth_loop_budget` is a single `var<private> u32` (one copy per
//! invocation). Because all loops, in all functions, draw from the same counter,
//! an invocation runs at most `MAX + nesting depth` loop-body entries in total.

use naga::{
    AddressSpace, Arena, BinaryOperator, Block, Expression, Function, GlobalVariable, Handle,
    Literal, MemoryDecorations, Module, Range, Scalar, Span, Statement, Type, TypeInner,
};

/// Base name of the private counter global added by [`bound_loops`].
pub const BUDGET_GLOBAL_NAME: &str = "hearth_loop_budget";

/// Instruments every loop in `module` to break once the shared per-invocation budget of `max_iterations` is spent; returns the number of loops instrumented.
pub fn bound_loops(module: &mut Module, max_iterations: u32) -> usize {
    let has_loops = module
        .functions
        .iter()
        .any(|(_, f)| count_loops(&f.body) > 0)
        || module
            .entry_points
            .iter()
            .any(|ep| count_loops(&ep.function.body) > 0);
    if !has_loops {
        return 0;
    }

    let budget = add_budget_global(module);
    let mut instrumented = 0;
    for (_, function) in module.functions.iter_mut() {
        instrumented += instrument_function(function, budget, max_iterations);
    }
    for entry_point in module.entry_points.iter_mut() {
        instrumented += instrument_function(&mut entry_point.function, budget, max_iterations);
    }
    instrumented
}

/// Counts the `Statement::Loop`s in `block`, recursively (including loops in `continuing` blocks).
pub fn count_loops(block: &Block) -> usize {
    block
        .iter()
        .map(|statement| match *statement {
            Statement::Block(ref inner) => count_loops(inner),
            Statement::If {
                ref accept,
                ref reject,
                ..
            } => count_loops(accept) + count_loops(reject),
            Statement::Switch { ref cases, .. } => cases.iter().map(|c| count_loops(&c.body)).sum(),
            Statement::Loop {
                ref body,
                ref continuing,
                ..
            } => 1 + count_loops(body) + count_loops(continuing),
            _ => 0,
        })
        .sum()
}

/// Adds the `var<private> hearth_loop_budget: u32 = 0u;` global, with a name that does not clash.
fn add_budget_global(module: &mut Module) -> Handle<GlobalVariable> {
    let taken = |name: &str| {
        module
            .global_variables
            .iter()
            .any(|(_, g)| g.name.as_deref() == Some(name))
    };
    let mut name = BUDGET_GLOBAL_NAME.to_string();
    let mut suffix = 1u32;
    while taken(&name) {
        name = format!("{BUDGET_GLOBAL_NAME}_{suffix}");
        suffix += 1;
    }

    let ty = module.types.insert(
        Type {
            name: None,
            inner: TypeInner::Scalar(Scalar::U32),
        },
        Span::UNDEFINED,
    );
    let init = module
        .global_expressions
        .append(Expression::Literal(Literal::U32(0)), Span::UNDEFINED);
    module.global_variables.append(
        GlobalVariable {
            name: Some(name),
            space: AddressSpace::Private,
            binding: None,
            ty,
            init: Some(init),
            memory_decorations: MemoryDecorations::empty(),
        },
        Span::UNDEFINED,
    )
}

/// Per-function handles of the non-emitted expressions every guard shares.
struct Guard {
    budget_ptr: Handle<Expression>,
    max: Handle<Expression>,
    one: Handle<Expression>,
}

fn instrument_function(
    function: &mut Function,
    budget: Handle<GlobalVariable>,
    max_iterations: u32,
) -> usize {
    if count_loops(&function.body) == 0 {
        return 0;
    }
    // GlobalVariable and Literal expressions are "pre-emitted": they need no Emit.
    let exprs = &mut function.expressions;
    let guard = Guard {
        budget_ptr: exprs.append(Expression::GlobalVariable(budget), Span::UNDEFINED),
        max: exprs.append(
            Expression::Literal(Literal::U32(max_iterations)),
            Span::UNDEFINED,
        ),
        one: exprs.append(Expression::Literal(Literal::U32(1)), Span::UNDEFINED),
    };
    instrument_block(&mut function.body, exprs, &guard)
}

fn instrument_block(block: &mut Block, exprs: &mut Arena<Expression>, guard: &Guard) -> usize {
    let mut instrumented = 0;
    for (statement, span) in block.span_iter_mut() {
        let span = span.map_or(Span::UNDEFINED, |s| *s);
        match *statement {
            Statement::Block(ref mut inner) => {
                instrumented += instrument_block(inner, exprs, guard)
            }
            Statement::If {
                ref mut accept,
                ref mut reject,
                ..
            } => {
                instrumented += instrument_block(accept, exprs, guard);
                instrumented += instrument_block(reject, exprs, guard);
            }
            Statement::Switch { ref mut cases, .. } => {
                for case in cases.iter_mut() {
                    instrumented += instrument_block(&mut case.body, exprs, guard);
                }
            }
            Statement::Loop {
                ref mut body,
                ref mut continuing,
                ..
            } => {
                instrumented += instrument_block(body, exprs, guard);
                // Loops nested in `continuing` are real loops too; the guard
                // itself goes only in the body (a `break` is illegal in continuing).
                instrumented += instrument_block(continuing, exprs, guard);
                let prologue = guard_prologue(exprs, guard, span);
                body.splice(0..0, prologue);
                instrumented += 1;
            }
            _ => {}
        }
    }
    instrumented
}

/// Builds `if (budget >= max) { break; } budget = budget + 1u;` for one loop body.
fn guard_prologue(exprs: &mut Arena<Expression>, guard: &Guard, span: Span) -> Block {
    let loaded = exprs.append(
        Expression::Load {
            pointer: guard.budget_ptr,
        },
        span,
    );
    let exhausted = exprs.append(
        Expression::Binary {
            op: BinaryOperator::GreaterEqual,
            left: loaded,
            right: guard.max,
        },
        span,
    );
    let mut block = Block::with_capacity(4);
    block.push(
        Statement::Emit(Range::new_from_bounds(loaded, exhausted)),
        span,
    );
    let mut accept = Block::with_capacity(1);
    accept.push(Statement::Break, span);
    block.push(
        Statement::If {
            condition: exhausted,
            accept,
            reject: Block::new(),
        },
        span,
    );
    // `loaded` was emitted above in this same block, so it is still in scope here.
    let incremented = exprs.append(
        Expression::Binary {
            op: BinaryOperator::Add,
            left: loaded,
            right: guard.one,
        },
        span,
    );
    block.push(
        Statement::Emit(Range::new_from_bounds(incremented, incremented)),
        span,
    );
    block.push(
        Statement::Store {
            pointer: guard.budget_ptr,
            value: incremented,
        },
        span,
    );
    block
}
