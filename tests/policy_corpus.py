"""Test policies covering every construct the compiler supports.

Each entry is Rego source for package ``t``; the differential test evaluates
every rule of the package (and the package itself) on generated inputs.
"""

from __future__ import annotations

HEADER = "package t\nimport rego.v1\n"

CORPUS: dict[str, str] = {
    "booleans_default": """
default allow := false
allow if input.method == "GET"
allow if { input.method == "POST"; input.user == "admin" }
deny if not allow
""",
    "comparisons": """
eq if input.a == input.b
ne if input.a != input.b
lt if input.a < input.b
le if input.a <= input.b
gt if input.a > input.b
ge if input.a >= input.b
cmp := [input.a == input.b, input.a < input.b, input.b >= input.a]
""",
    "arithmetic": """
add := input.n + input.m
sub := input.n - input.m
mul := input.n * input.m
div := input.n / input.m
mod := input.n % input.m
neg := 0 - input.n
lit := -3 + input.n
expr := (input.n + 1) * 2 - input.m
""",
    "set_ops": """
s1 := {x | some x in input.xs}
s2 := {x | some x in input.ys}
u := s1 | s2
i := s1 & s2
d := s1 - s2
""",
    "else_chain": """
level := "high" if {
    input.n > 10
} else := "mid" if {
    input.n > 5
} else := "low" if {
    is_number(input.n)
}
flag if { input.a } else := false
""",
    "partial_set": """
deny contains msg if {
    some x in input.xs
    is_string(x)
    startswith(x, "bad")
    msg := sprintf("bad value %s", [x])
}
deny contains "empty" if count(input.xs) == 0
names contains name if some name, _ in input.o
""",
    "partial_object": """
lengths[k] := count(v) if {
    some k, v in input.o
    is_string(v)
}
flags[x] := true if some x in input.xs
""",
    "functions": """
double(x) := x * 2
inc(x) := y if { y := x + 1 }
is_admin(u) if u.role == "admin"
is_admin(u) if u.name == "root"
first_or(xs, d) := xs[0] if count(xs) > 0
first_or(xs, d) := d if count(xs) == 0
a := double(input.n)
b := inc(inc(input.n))
c if is_admin(input.user)
d := first_or(input.xs, "none")
e := [double(x) | some x in input.xs; is_number(x)]
""",
    "function_constants": """
kind(0) := "zero"
kind(1) := "one"
k := kind(input.n)
""",
    "membership": """
m1 if input.a in input.xs
m2 if "admin" in input.roles
m3 if input.a in {"x", "y", 1}
m4 if input.a in {"k": "x"}
m5 := input.a in input.o
m6 if { some k, v in input.o; k == input.a }
m7 if { x := input.a; 1, x in input.xs }
m8 if not input.a in input.xs
""",
    "some_iteration": """
any_big if { some i; input.xs[i] > 3 }
idx contains i if input.xs[i] == input.a
keys contains k if input.o[k]
pairs contains [k, v] if { some k; v := input.o[k] }
nested contains x if x := input.m[_][_]
""",
    "every": """
all_pos if every x in input.xs { x > 0 }
all_str if every k, v in input.o { is_string(k); is_string(v) }
none_bad if every x in input.xs { not x == "bad" }
""",
    "comprehensions": """
arr := [x | some x in input.xs]
strs := {x | some x in input.xs; is_string(x)}
obj := {k: v | some k; v := input.o[k]; k != "skip"}
nested := [inner | some x in input.xs; inner := [y | some y in input.xs; y != x]]
doubled := {y | some x in input.xs; is_number(x); y := x * 2}
count_big := count([x | some x in input.xs; x > 2])
""",
    "strings": """
sw if startswith(input.s, "ab")
ew if endswith(input.s, "yz")
ct if contains(input.s, "mid")
lo := lower(input.s)
up := upper(input.s)
cc := concat(",", input.xs)
sp := split(input.s, ",")
tr := trim(input.s, " x")
tp := trim_prefix(input.s, "pre")
ts := trim_suffix(input.s, "suf")
rp := replace(input.s, "a", "bb")
cs := count(input.s)
""",
    "aggregates": """
c := count(input.xs)
s := sum(input.xs)
mx := max(input.xs)
mn := min(input.xs)
co := count(input.o)
""",
    "objects": """
g1 := object.get(input.o, "k", "default")
g2 := object.get(input.o, input.a, 0)
ac := array.concat(input.xs, ["tail"])
lit := {"a": input.a, "b": [input.n, {"c": input.s}]}
keyed := {input.s: 1}
""",
    "more_builtins": """
pr := product(input.xs)
sl := array.slice(input.xs, 1, input.n)
ts := trim_space(input.s)
tn := to_number(input.s)
ab := abs(input.n)
rd := [round(input.a), ceil(input.a), floor(input.a)]
rg := numbers.range(input.n, 3)
ix := indexof(input.s, "a")
ss := substring(input.s, 1, input.n)
rv := strings.reverse(input.s)
fi := format_int(input.n, 2)
ok := object.keys(input.o)
orm := object.remove(input.o, ["GET", "k"])
ou := object.union(input.o, {"k": "v", "z": 1})
un := union({{1, 2}, {2, 3}, {x | some x in input.xs}})
it := intersection({{1, 2, "a"}, {x | some x in input.xs}})
so := sort(input.xs)
ar := array.reverse(input.xs)
""",
    "types": """
t := [is_string(input.a), is_number(input.a), is_boolean(input.a), is_array(input.a), is_set(input.a), is_object(input.a), is_null(input.a)]
tn := type_name(input.a)
""",
    "refs_and_data": """
role := data.roles[input.user]
perms contains p if some p in data.roles[input.user].perms
blocked if input.user in data.blocked
deep := data.config.limits[input.a]
""",
    "unification": """
u1 if { [a, b] := input.xs; a == b }
u2 if { x = input.n; x > 1 }
u3 := y if { [1, y] = input.xs }
u4 if { input.o.k = "v" }
u5 if { input.xs[i] = "x"; i > 0 }
""",
    "negation": """
n1 if not input.a
n2 if { not input.a == 1; not input.b }
n3 if { some x in input.xs; not x in input.ys }
helper if input.n > 5
n4 if not helper
""",
    "cross_package_rules": """
import data.t.lib
r1 := lib.base + 1 if lib.base
r2 if lib.check(input.n)
""",
    "patterns": """
rx if regex.match(`^[a-z]+[0-9]{2,3}$`, input.s)
rx2 if regex.match("(foo|bar)baz?", input.s)
gl if glob.match("*.example.com", ["."], input.s)
gl2 if glob.match("api/**/v1", ["/"], input.s)
cidr if net.cidr_contains("10.0.0.0/8", input.ip)
cidr6 if net.cidr_contains("2001:db8::/32", input.ip)
""",
    "scalars_and_literals": """
n := null
b := true
f := 1.5
i := -3
s := "unicode ✓ \\u00e9"
a := [1, "two", null, false, {"k": [1, 2]}]
st := {3, 1, 2, "a", null}
o := {"z": 1, "a": {"nested": true}}
e := []
eo := {}
""",
    "conflicts": """
x := input.a if input.n > 0
x := input.b if input.n > 1
f(v) := 1 if v > 0
f(v) := 2 if v > 1
y := f(input.n)
""",
    "with_input": """
inner if input.a == "x"
w1 if inner with input as {"a": "x"}
w2 := v if { v := inner with input as {"a": input.b} }
w3 if not inner with input as {"a": "y"}
""",
    "destructuring": """
pairs contains [a, b] if { some [a, b] in input.m }
nested := [a, b, c] if { [a, [b, c]] := input.m }
obj := v if { {"k": v} = input.o }
objs contains [k, r] if { some k, {"role": r} in {"u": input.user} }
both := [a, b] if { [a, 1] = [input.n, b] }
mixed := [a, b] if { [a, {"k": b}] := [input.n, input.o] }
""",
    "defaults_computed": """
default names := [x | some x in ["none"]]
names := ns if { input.a; ns := [n | some n in input.xs; is_string(n)] }
default keys := {k | some k, _ in {"a": 1}}
keys := ks if { count(input.o) > 1; ks := {k | some k, _ in input.o} }
default pairs := {k: 1 | some k in input.roles}
""",
    "scopes": """
import data.t.lib.base
import input.a
import data.t.lib as count
import input.xs as lower
base := 1
a := input.b
c := count(input.ys)
l := lower
u := upper(input.s) if is_string(input.s)
q := [base, a, c]
shadow := [base, x] if { base := 5; x := base }
inner := [x, y] if { x := input.n; y := [x | x := 2] }
""",
}

# Supporting modules for policies that import other packages.
EXTRA_MODULES: dict[str, dict[str, str]] = {
    "cross_package_rules": {
        "lib.rego": ("package t.lib\nimport rego.v1\nbase := 41\ncheck(x) if x > 2\n"),
    },
    "scopes": {
        "lib.rego": ("package t.lib\nimport rego.v1\nbase := 41\nupper(x) := 7\n"),
    },
}

DATA: dict[str, object] = {
    "roles": {
        "alice": {"perms": ["read", "write"], "level": 2},
        "bob": {"perms": ["read"], "level": 1},
    },
    "blocked": ["mallory", "eve"],
    "config": {"limits": {"a": 10, "b": 20, "x": [1, 2]}},
}
