"""Back end: IR → WAT text for one policy module (see docs/policy-abi.md).

One module per stage:

- ``analysis``: what the entrypoints reach, the input slots, purity (no code);
- ``rules``: a wasm function per rule, ``a1_eval``, and the module around them;
- ``queries``: rule bodies and comprehension queries, literal by literal;
- ``terms``: values, references, operators and calls;
- ``emitter``: the emission state they share; ``abi``: the runtime they target.
"""

from __future__ import annotations

from policies.compiler import ir
from policies.compiler.codegen.rules import Generator, Module

__all__ = ["Module", "generate"]


def generate(program: ir.Program, entrypoints: list[str]) -> Module:
    return Generator(program).module(entrypoints)
