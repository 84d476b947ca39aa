/* Builtin-style wrappers over a1rt_match.c (regex.match, glob.match,
 * net.cidr_contains with a compile-time pattern): they return a boolean
 * value and trap where regorus errors, instead of returning -1. */
#include "a1rt.h"
#include "a1rt_match.h"

static a1v verdict(int32_t r, a1v s) {
    if (r >= 0) return a1_bool(r);
    a1_fail(s && a1_tag_of(s) == A1_STR ? E_RANGE : E_TYPE);
}

A1_EXPORT("a1_b_regex_match") a1v a1_b_regex_match(a1v dfa, a1v s) {
    return verdict(a1_dfa_match(dfa, s), s);
}

A1_EXPORT("a1_b_glob_match") a1v a1_b_glob_match(a1v dfa, a1v s) {
    return verdict(a1_dfa_match(dfa, s), s);
}

A1_EXPORT("a1_b_net_cidr_contains") a1v a1_b_net_cidr_contains(a1v cidr, a1v ip) {
    return verdict(a1_cidr_match(cidr, ip), ip);
}
