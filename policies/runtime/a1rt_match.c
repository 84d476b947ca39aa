/* a1rt_match: walk compile-time automata and test CIDR containment.
 *
 * Freestanding C for wasm32 (no libc, no allocation). Blob layouts are in
 * docs/patterns.md; they are produced by policies/compiler/patterns/.
 *
 * Semantics follow regorus, the differential oracle:
 *  - regex.match: Rust regex `is_match` (unanchored search over scalars);
 *  - glob.match: globset over bytes after regorus's delimiter rewriting,
 *    which the compiler folded into the automaton;
 *  - net.cidr_contains: ipnet's parser for "addr/prefix" subjects, Rust
 *    std's (stricter: no leading zeros in IPv4 octets) for bare addresses.
 */
#include "a1rt_match.h"

#define MATCH_EXPORT(name) __attribute__((export_name(name)))

typedef uint32_t u32_unaligned __attribute__((aligned(1)));

static inline const uint8_t *mem(uint32_t ptr) { return (const uint8_t *)(uintptr_t)ptr; }
static inline uint32_t ld32(const uint8_t *p) { return *(const u32_unaligned *)p; }

enum { TAG_STRING = 4 };

/* The bytes and length of a string value, or 0 when `v` is not a string. */
static int string_of(uint32_t v, const uint8_t **bytes, uint32_t *len) {
    if (v == 0) return 0;
    const uint8_t *rec = mem(v);
    if (rec[0] != TAG_STRING) return 0;
    *len = ld32(rec + 4);
    *bytes = rec + 8;
    return 1;
}

/* ---- DFA ---------------------------------------------------------------- */

/* Decode one UTF-8 scalar at s[*i] (strict: no overlongs, surrogates or
 * values past U+10FFFF). Returns the scalar or -1. */
static int32_t utf8_next(const uint8_t *s, uint32_t n, uint32_t *i) {
    uint32_t k = *i;
    uint32_t b0 = s[k];
    if (b0 < 0x80) {
        *i = k + 1;
        return (int32_t)b0;
    }
    uint32_t need, c, min;
    if (b0 >= 0xC2 && b0 < 0xE0) {
        need = 1; c = b0 & 0x1F; min = 0x80;
    } else if (b0 >= 0xE0 && b0 < 0xF0) {
        need = 2; c = b0 & 0x0F; min = 0x800;
    } else if (b0 >= 0xF0 && b0 < 0xF5) {
        need = 3; c = b0 & 0x07; min = 0x10000;
    } else {
        return -1;
    }
    if (n - k - 1 < need) return -1;
    for (uint32_t j = 1; j <= need; j++) {
        uint32_t b = s[k + j];
        if ((b & 0xC0) != 0x80) return -1;
        c = (c << 6) | (b & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return -1;
    *i = k + 1 + need;
    return (int32_t)c;
}

/* The class of symbol c: binary search over the blob's sorted class ranges;
 * symbols outside every range are class 0. */
static uint32_t class_of(const uint8_t *map, uint32_t n_map, uint32_t c) {
    uint32_t lo = 0, hi = n_map;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const uint8_t *m = map + 12 * mid;
        if (c < ld32(m)) hi = mid;
        else if (c > ld32(m + 4)) lo = mid + 1;
        else return ld32(m + 8);
    }
    return 0;
}

/* The answer `result` once the walk stopped early at byte i: -1 instead when
 * the rest of a scalar-mode subject is not UTF-8, so that a malformed subject
 * is an error whatever the pattern. */
static int32_t finish(int32_t result, const uint8_t *s, uint32_t n, uint32_t i,
                      uint32_t bytes_mode) {
    if (!bytes_mode)
        while (i < n)
            if (utf8_next(s, n, &i) < 0) return -1;
    return result;
}

MATCH_EXPORT("a1_dfa_match")
int32_t a1_dfa_match(uint32_t dfa, uint32_t s) {
    const uint8_t *str;
    uint32_t n;
    if (!string_of(s, &str, &n)) return -1;
    const uint8_t *blob = mem(dfa);
    if (dfa == 0 || ld32(blob) != A1_DFA_MAGIC || ld32(blob + 4) != A1_PATTERN_VERSION) return -1;
    uint32_t flags = ld32(blob + 8);
    uint32_t n_states = ld32(blob + 12);
    uint32_t state = ld32(blob + 16);
    uint32_t n_classes = ld32(blob + 20);
    uint32_t n_map = ld32(blob + 24);
    const uint8_t *map = blob + 32;
    const uint8_t *state_flags = map + 12 * n_map;
    const uint8_t *table = state_flags + 4 * n_states;
    uint32_t bytes_mode = flags & A1_DFA_BYTES;

    if (flags & A1_DFA_NUL_ERROR) {
        for (uint32_t i = 0; i < n; i++)
            if (str[i] == 0) return -1;
    }
    if (n_states == 0) return finish(0, str, n, 0, bytes_mode); /* matches nothing */
    if (state >= n_states) return -1;
    uint32_t f = ld32(state_flags + 4 * state);
    if (f & A1_STATE_MATCH) return finish(1, str, n, 0, bytes_mode);

    uint32_t i = 0;
    while (i < n) {
        uint32_t c;
        if (bytes_mode) {
            c = str[i++];
        } else {
            int32_t cp = utf8_next(str, n, &i);
            if (cp < 0) return -1;
            c = (uint32_t)cp;
        }
        uint32_t k = class_of(map, n_map, c);
        if (k >= n_classes) return -1;
        state = ld32(table + 4 * (state * n_classes + k));
        if (state == 0xFFFFFFFFu) return finish(0, str, n, i, bytes_mode); /* dead */
        if (state >= n_states) return -1;
        f = ld32(state_flags + 4 * state);
        if (f & A1_STATE_MATCH) return finish(1, str, n, i, bytes_mode);
    }
    return (f & A1_STATE_EOI) ? 1 : 0;
}

/* ---- IP addresses ------------------------------------------------------- */

typedef struct {
    const uint8_t *s;
    uint32_t n;
    uint32_t pos;
} ip_parser;

static int take(ip_parser *p, uint8_t ch) {
    if (p->pos < p->n && p->s[p->pos] == ch) {
        p->pos++;
        return 1;
    }
    return 0;
}

static int digit_value(uint8_t ch, uint32_t radix) {
    int d;
    if (ch >= '0' && ch <= '9') d = ch - '0';
    else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
    else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
    else return -1;
    return d < (int)radix ? d : -1;
}

/* A number of at most max_digits digits, below `limit`; leading zeros only
 * when zero_prefix (ipnet allows them, std does not for IPv4 octets). */
static int read_number(ip_parser *p, uint32_t radix, uint32_t max_digits, uint32_t limit,
                       int zero_prefix, uint32_t *out) {
    uint32_t start = p->pos, value = 0, digits = 0;
    int leading_zero = p->pos < p->n && p->s[p->pos] == '0';
    int d;
    while (p->pos < p->n && (d = digit_value(p->s[p->pos], radix)) >= 0) {
        p->pos++;
        value = value * radix + (uint32_t)d;
        digits++;
        if (digits > max_digits || value >= limit) goto fail;
    }
    if (digits == 0) goto fail;
    if (!zero_prefix && leading_zero && digits > 1) goto fail;
    *out = value;
    return 1;
fail:
    p->pos = start;
    return 0;
}

static int read_v4(ip_parser *p, int strict, uint8_t out[4]) {
    uint32_t start = p->pos, octet;
    for (int i = 0; i < 4; i++) {
        if ((i && !take(p, '.')) || !read_number(p, 10, 3, 256, !strict, &octet)) {
            p->pos = start;
            return 0;
        }
        out[i] = (uint8_t)octet;
    }
    return 1;
}

/* Up to `limit` colon-separated groups, the last two of which may be an
 * embedded IPv4 address. Returns the count; *had_v4 says whether it ended
 * with an IPv4 address. */
static uint32_t read_groups(ip_parser *p, int strict, uint16_t *groups, uint32_t limit,
                            int *had_v4) {
    uint32_t i = 0;
    *had_v4 = 0;
    while (i < limit) {
        if (i + 1 < limit) {
            uint32_t save = p->pos;
            uint8_t v4[4];
            if ((i == 0 || take(p, ':')) && read_v4(p, strict, v4)) {
                groups[i] = (uint16_t)(v4[0] << 8 | v4[1]);
                groups[i + 1] = (uint16_t)(v4[2] << 8 | v4[3]);
                *had_v4 = 1;
                return i + 2;
            }
            p->pos = save;
        }
        uint32_t save = p->pos, g;
        if (!((i == 0 || take(p, ':')) && read_number(p, 16, 4, 0x10000, 1, &g))) {
            p->pos = save;
            return i;
        }
        groups[i++] = (uint16_t)g;
    }
    return i;
}

/* std's grammar when strict; ipnet's (a copy of an older std) otherwise:
 * ipnet lets "::" stand for no group at all and allows 0-prefixed octets. */
static int read_v6(ip_parser *p, int strict, uint8_t out[16]) {
    uint32_t start = p->pos;
    uint16_t head[8], tail[8];
    int head_v4, tail_v4;
    uint32_t head_n = read_groups(p, strict, head, 8, &head_v4), tail_n = 0;
    if (head_n < 8) {
        if (head_v4 || !take(p, ':') || !take(p, ':')) {
            p->pos = start;
            return 0;
        }
        tail_n = read_groups(p, strict, tail, (strict ? 7u : 8u) - head_n, &tail_v4);
    }
    for (uint32_t i = 0; i < 8; i++) {
        uint16_t g = 0;
        if (i < head_n) g = head[i];
        else if (i >= 8 - tail_n) g = tail[i - (8 - tail_n)];
        out[2 * i] = (uint8_t)(g >> 8);
        out[2 * i + 1] = (uint8_t)g;
    }
    return 1;
}

/* Parse a subject: "addr/prefix" as ipnet does, a bare address as std does.
 * Fills family (4 or 6), 16 address bytes (IPv4 in the first 4) and prefix. */
static int parse_subject(const uint8_t *s, uint32_t n, uint32_t *family, uint8_t addr[16],
                         uint32_t *prefix) {
    int has_slash = 0;
    for (uint32_t i = 0; i < n; i++) has_slash |= s[i] == '/';
    for (uint32_t i = 0; i < 16; i++) addr[i] = 0;
    ip_parser p = {s, n, 0};
    if (has_slash) {
        if (read_v4(&p, 0, addr) && take(&p, '/') && read_number(&p, 10, 2, 33, 1, prefix)) {
            *family = 4;
            return p.pos == n;
        }
        p.pos = 0;
        if (read_v6(&p, 0, addr) && take(&p, '/') && read_number(&p, 10, 3, 129, 1, prefix)) {
            *family = 6;
            return p.pos == n;
        }
        return 0;
    }
    if (read_v4(&p, 1, addr)) {
        *family = 4;
        *prefix = 32;
        return p.pos == n;
    }
    p.pos = 0;
    if (read_v6(&p, 1, addr)) {
        *family = 6;
        *prefix = 128;
        return p.pos == n;
    }
    return 0;
}

MATCH_EXPORT("a1_cidr_match")
int32_t a1_cidr_match(uint32_t cidr, uint32_t s) {
    const uint8_t *str;
    uint32_t n;
    if (!string_of(s, &str, &n)) return -1;
    const uint8_t *blob = mem(cidr);
    if (cidr == 0 || ld32(blob) != A1_CIDR_MAGIC || ld32(blob + 4) != A1_PATTERN_VERSION) return -1;
    uint32_t net_family = ld32(blob + 8), net_prefix = ld32(blob + 12);
    const uint8_t *net = blob + 16;

    uint32_t family, prefix;
    uint8_t addr[16];
    if (!parse_subject(str, n, &family, addr, &prefix)) return -1;
    if (family != net_family || prefix < net_prefix) return 0;
    uint32_t full = net_prefix / 8, rest = net_prefix % 8;
    for (uint32_t i = 0; i < full; i++)
        if (addr[i] != net[i]) return 0;
    if (rest) {
        uint8_t mask = (uint8_t)(0xFF << (8 - rest));
        if ((addr[full] & mask) != net[full]) return 0;
    }
    return 1;
}
