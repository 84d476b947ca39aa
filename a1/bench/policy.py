"""Policy evaluation benchmark: our compiled fast path against regorus, side by side.

Same process, same Python dict inputs, interleaved rounds (so machine noise
hits every contender alike). Contenders:

- ``floor``: a compiled ``allow := true`` through the same fast path — the
  fixed cost of one host → wasm round trip with input encoding;
- ``a1``: the reference policy (``a1/authz/decision``) through the fast path;
- ``a1-cached``: the exact decision cache (encode + dict hit), what the sidecar
  pays for a repeated decision;
- ``regorus``: ``set_input_json(json.dumps(input))`` + ``eval_rule``.

Then OPA-Envoy's primer policy (``envoy/authz/allow``, OPA-Envoy's input, HS256
tokens minted here): ``primer`` is the policy unchanged, its signature check a
host builtin. regorus has no ``io.jwt.*``, so the side-by-side pair runs the primer
with the verified claims taken from the input instead (``primer-claims`` ours,
``regorus-claims`` regorus's): the same rules, minus the one builtin regorus lacks.

Run: ``a1 bench policy`` (or ``python -m a1.bench.policy``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import jwt
import regorus

from a1.package_data import policy_library
from policies.compiler import compile_files, compile_sources
from policies.runtime import PolicyModule

LIBRARY = policy_library()
ENTRY = "a1/authz/decision"

INPUTS: list[dict[str, Any]] = [
    {
        "method": "GET",
        "path": "/t/acme/items",
        "tenant": "acme",
        "subject": {"sub": "u1", "tenant": "acme", "roles": ["reader"]},
    },
    {
        "method": "POST",
        "path": "/t/acme/items",
        "tenant": "acme",
        "subject": {"sub": "u1", "tenant": "acme", "roles": ["reader"]},
    },
    {
        "method": "DELETE",
        "path": "/t/acme/items/7",
        "tenant": "acme",
        "subject": {"sub": "u2", "tenant": "acme", "roles": ["reader", "writer"]},
    },
    {
        "method": "GET",
        "path": "/t/globex/items",
        "tenant": "globex",
        "subject": {"sub": "u3", "tenant": "acme", "roles": ["writer"]},
    },
    {
        "method": "PUT",
        "path": "/t/globex/items/1",
        "tenant": "globex",
        "subject": {"sub": "ops", "tenant": "platform", "roles": ["platform-admin"]},
    },
    {
        "method": "GET",
        "path": "/t/suspended-co/items",
        "tenant": "suspended-co",
        "subject": {"sub": "s", "tenant": "suspended-co", "roles": ["reader"]},
    },
    {"method": "GET", "path": "/public/readme"},
]


def _percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


PRIMER = "opa_envoy_primer.rego"
PRIMER_ENTRY = "envoy/authz/allow"
# The primer's token rule with the claims read from the input: what regorus can run.
PRIMER_TOKEN = '\t[valid, _, payload] := io.jwt.decode_verify(encoded, {"secret": "secret"})\n'
CLAIMS_TOKEN = '\t[valid, payload] := [encoded != "", input.claims]\n'


def _primer_inputs() -> list[dict[str, Any]]:
    """The primer's requests: a guest and an admin, reads and writes, one bad token."""
    now = int(time.time())
    docs = []
    for role, method, path, body in [
        ("guest", "GET", "/people/alice", None),
        ("guest", "POST", "/people", {"firstname": "bob"}),
        ("admin", "POST", "/people", {"firstname": "carol"}),
        ("admin", "GET", "/people/bob", None),
    ]:
        claims = {"role": role, "sub": "YWxpY2U", "nbf": now - 60, "exp": now + 3600}
        with warnings.catch_warnings():  # the primer's secret is short: PyJWT says so
            warnings.simplefilter("ignore")
            token = jwt.encode(claims, "secret", algorithm="HS256")
        http = {"method": method, "path": path, "headers": {"authorization": f"Bearer {token}"}}
        doc: dict[str, Any] = {"attributes": {"request": {"http": http}}, "claims": claims}
        if body is not None:
            doc["parsed_body"] = body
        docs.append(doc)
    return docs


def _time(
    fn: Callable[[dict[str, Any]], Any], rounds: int, inputs: list[dict[str, Any]] = INPUTS
) -> list[int]:
    out: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for doc in inputs:
            t0 = clock()
            fn(doc)
            out.append(clock() - t0)
    return out


def run(iterations: int = 3000, blocks: int = 5) -> dict[str, Any]:
    sources = [LIBRARY / "authz.rego"]
    data_path = LIBRARY / "data.json"
    t0 = time.perf_counter()
    wasm = compile_files(sources, data_path, [ENTRY])
    compile_ms = (time.perf_counter() - t0) * 1000

    module = PolicyModule.load(wasm)
    ev = module.evaluator(ENTRY)
    floor_ev = PolicyModule.load(
        compile_sources({"f.rego": "package f\nallow := true\n"}, None, ["f/allow"])
    ).evaluator("f/allow")
    cache: dict[bytes, Any] = {}

    def cached(doc: dict[str, Any]) -> Any:
        key = ev.encode(doc)
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = ev.eval_encoded(key)
        return hit

    engine = regorus.Engine()
    engine.add_policy_from_file(str(sources[0]))
    engine.add_data_json(data_path.read_text())

    def reg(doc: dict[str, Any]) -> Any:
        engine.set_input_json(json.dumps(doc))
        return engine.eval_rule("data.a1.authz.decision")

    # Same answers before timing anything.
    for doc in INPUTS:
        ours, theirs = ev.evaluate(doc), reg(doc)
        assert json.dumps(ours, sort_keys=True) == json.dumps(
            {k: (int(v) if isinstance(v, float) else v) for k, v in theirs.items()}, sort_keys=True
        ), (doc, ours, theirs)

    contenders: dict[str, Callable[[dict[str, Any]], Any]] = {
        "floor": floor_ev.evaluate,
        "a1": ev.evaluate,
        "a1-cached": cached,
        "regorus": reg,
    }
    stats, ratios = _compare(contenders, INPUTS, iterations, blocks, "regorus")
    return {
        "compile_ms": compile_ms,
        "stats": stats,
        "ratios": ratios,
        "input_paths": [list(p) for p in module.meta.input_paths],
        "primer": _primer(iterations, blocks),
    }


def _primer(iterations: int, blocks: int) -> dict[str, Any]:
    """The OPA-Envoy primer, unchanged, beside the claims variant in ours and regorus."""
    text = (LIBRARY / PRIMER).read_text()
    if PRIMER_TOKEN not in text:
        raise AssertionError(f"{PRIMER}: the token rule changed; update the claims variant")
    variant = text.replace(PRIMER_TOKEN, CLAIMS_TOKEN)
    primer = PolicyModule.load(compile_sources({PRIMER: text}, None, [PRIMER_ENTRY]))
    claims = PolicyModule.load(compile_sources({PRIMER: variant}, None, [PRIMER_ENTRY]))
    ours, theirs = primer.evaluator(PRIMER_ENTRY), claims.evaluator(PRIMER_ENTRY)
    engine = regorus.Engine()
    engine.add_policy(PRIMER, variant)

    def reg(doc: dict[str, Any]) -> Any:
        engine.set_input_json(json.dumps(doc))
        return engine.eval_rule("data.envoy.authz.allow")

    inputs = _primer_inputs()
    answers = [ours.evaluate(doc) for doc in inputs]
    for doc, answer in zip(inputs, answers, strict=True):
        assert answer == theirs.evaluate(doc) == reg(doc), (doc, answer)
    assert answers == [True, False, True, True], answers
    contenders = {"primer": ours.evaluate, "primer-claims": theirs.evaluate, "regorus-claims": reg}
    stats, ratios = _compare(contenders, inputs, iterations, blocks, "regorus-claims")
    return {"stats": stats, "ratios": ratios, "pure": primer.meta.pure}


def _compare(
    contenders: dict[str, Callable[[dict[str, Any]], Any]],
    inputs: list[dict[str, Any]],
    iterations: int,
    blocks: int,
    baseline: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Interleaved blocks of every contender on the same inputs; medians, p99s, ratios."""
    samples: dict[str, list[int]] = {name: [] for name in contenders}
    rounds = max(1, iterations // (blocks * len(inputs)))
    for fn in contenders.values():  # warm-up
        _time(fn, 20, inputs)
    for _ in range(blocks):
        for name, fn in contenders.items():
            samples[name].extend(_time(fn, rounds, inputs))
    stats = {
        name: {
            "median_us": statistics.median(s) / 1000.0,
            "p99_us": _percentile(s, 0.99),
            "n": len(s),
        }
        for name, s in samples.items()
    }
    base = stats[baseline]
    ratios = {
        name: {
            "median_vs_regorus": st["median_us"] / base["median_us"],
            "p99_vs_regorus": st["p99_us"] / base["p99_us"],
        }
        for name, st in stats.items()
    }
    return stats, ratios


def report(result: dict[str, Any]) -> str:
    lines = [
        f"reference policy a1/authz/decision: compile {result['compile_ms']:.0f} ms "
        f"(target < 1000 ms)",
        f"input paths the policy reads: {result['input_paths']}",
        *_table(result["stats"], result["ratios"], 11),
    ]
    a1 = result["ratios"]["a1"]["median_vs_regorus"]
    verdict = (
        "meets target (≤ 0.5×)"
        if a1 <= 0.5
        else ("meets must (≤ 1.0×)" if a1 <= 1.0 else "FAILS must (> 1.0×)")
    )
    lines.append(f"a1 median is {a1:.3f}× regorus: {verdict}")
    primer = result["primer"]
    lines += [
        "",
        "OPA-Envoy primer (envoy/authz/allow; HS256 verified in the policy); regorus has no",
        "io.jwt.*, so its column runs the primer with the claims taken from the input",
        *_table(primer["stats"], primer["ratios"], 15),
    ]
    return "\n".join(lines)


def _table(stats: dict[str, Any], ratios: dict[str, Any], width: int) -> list[str]:
    """One contender a row: medians and p99s, and both as ratios to the baseline."""
    lines = [
        f"{'contender':<{width}} {'median µs':>10} {'p99 µs':>9} "
        f"{'median/regorus':>15} {'p99/regorus':>12}"
    ]
    for name, st in stats.items():
        r = ratios[name]
        lines.append(
            f"{name:<{width}} {st['median_us']:>10.2f} {st['p99_us']:>9.2f} "
            f"{r['median_vs_regorus']:>15.3f} {r['p99_vs_regorus']:>12.3f}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30000)
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    args = parser.parse_args(argv)
    result = run(args.iterations)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0 if result["ratios"]["a1"]["median_vs_regorus"] <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
