/* String builtins, matching regorus (Rust str semantics: UTF-8,
 * positions and lengths in code points, Unicode full case mapping). */
#include "a1rt.h"

static void need_str(a1v v) { a1_need(v, A1_STR); }

static u32 utf8_count(const u8 *s, u32 n) {
    u32 c = 0;
    for (u32 i = 0; i < n; i++) c += (s[i] & 0xC0) != 0x80;
    return c;
}

/* Byte offset of the first occurrence of needle at or after from, or -1. */
static i32 find(const u8 *h, u32 hn, const u8 *nd, u32 nn, u32 from) {
    if (nn == 0) return from <= hn ? (i32)from : -1;
    if (nn > hn) return -1;
    u8 first = nd[0];
    for (u32 i = from; i + nn <= hn; i++)
        if (h[i] == first && memcmp(h + i, nd, nn) == 0) return (i32)i;
    return -1;
}

static int has_prefix(a1v s, a1v p) {
    u32 n = a1_n(p);
    return n <= a1_n(s) && memcmp(a1_s(s), a1_s(p), n) == 0;
}

static int has_suffix(a1v s, a1v p) {
    u32 n = a1_n(p), sn = a1_n(s);
    return n <= sn && memcmp(a1_s(s) + sn - n, a1_s(p), n) == 0;
}

A1_EXPORT("a1_b_startswith") a1v a1_b_startswith(a1v s, a1v p) {
    need_str(s);
    need_str(p);
    return a1_bool(has_prefix(s, p));
}

A1_EXPORT("a1_b_endswith") a1v a1_b_endswith(a1v s, a1v p) {
    need_str(s);
    need_str(p);
    return a1_bool(has_suffix(s, p));
}

A1_EXPORT("a1_b_contains") a1v a1_b_contains(a1v s, a1v p) {
    need_str(s);
    need_str(p);
    return a1_bool(find(a1_s(s), a1_n(s), a1_s(p), a1_n(p), 0) >= 0);
}

/* Substring of s by byte range, sharing nothing (values are immutable, but
 * records cannot point into other records). Returns s itself when whole. */
static a1v sub_bytes(a1v s, u32 from, u32 to) {
    if (from == 0 && to == a1_n(s)) return s;
    return a1_str_from(a1_s(s) + from, to - from);
}

/* ---- case mapping ---------------------------------------------------------- */

/* Start of the code point that ends just before byte i. */
static u32 utf8_prev(const u8 *s, u32 i) {
    do i--;
    while (i > 0 && (s[i] & 0xC0) == 0x80);
    return i;
}

/* Unicode Final_Sigma, as Rust's str::to_lowercase decides it for the
 * capital sigma occupying bytes [i, i + 2). */
static int final_sigma(const u8 *s, u32 n, u32 i) {
    u32 j = i, cp = 0;
    int found = 0;
    while (j > 0) {
        j = utf8_prev(s, j);
        u32 k = j;
        cp = a1_utf8_next(s, &k);
        if (!a1_case_ignorable(cp)) {
            found = 1;
            break;
        }
    }
    if (!found || !a1_cased(cp)) return 0;
    j = i + 2;
    while (j < n) {
        cp = a1_utf8_next(s, &j);
        if (!a1_case_ignorable(cp)) return !a1_cased(cp);
    }
    return 1;
}

static a1v map_case(a1v s, int upper) {
    need_str(s);
    const u8 *p = a1_s(s);
    u32 n = a1_n(s), i = 0;
    /* ASCII prefix that the mapping leaves unchanged: often all of it. */
    for (; i < n; i++) {
        u8 c = p[i];
        if (c >= 0x80 || (upper ? (c >= 'a' && c <= 'z') : (c >= 'A' && c <= 'Z'))) break;
    }
    if (i == n) return s;
    a1_sb_begin();
    a1_sb_put(p, i);
    while (i < n) {
        u8 c = p[i];
        if (c < 0x80) {
            if (upper ? (c >= 'a' && c <= 'z') : (c >= 'A' && c <= 'Z')) c ^= 0x20;
            a1_sb_putc(c);
            i++;
            continue;
        }
        u32 at = i, cp = a1_utf8_next(p, &i), out[3], m;
        if (!upper && cp == 0x3A3) {
            out[0] = final_sigma(p, n, at) ? 0x3C2 : 0x3C3;
            m = 1;
        } else {
            m = upper ? a1_case_upper(cp, out) : a1_case_lower(cp, out);
        }
        for (u32 j = 0; j < m; j++) {
            u8 b[4];
            a1_sb_put(b, a1_utf8_put(out[j], b));
        }
    }
    return a1_sb_end();
}

A1_EXPORT("a1_b_lower") a1v a1_b_lower(a1v s) { return map_case(s, 0); }
A1_EXPORT("a1_b_upper") a1v a1_b_upper(a1v s) { return map_case(s, 1); }

/* ---- joining, splitting, replacing ------------------------------------------ */

A1_EXPORT("a1_b_concat") a1v a1_b_concat(a1v delim, a1v coll) {
    need_str(delim);
    u32 t = a1_tag0(coll);
    if (t != A1_ARR && t != A1_SET) a1_fail(E_TYPE);
    u32 n = a1_n(coll);
    const a1v *it = a1_items(coll);
    for (u32 i = 0; i < n; i++) need_str(it[i]);
    if (n == 1) return it[0];
    a1_sb_begin();
    for (u32 i = 0; i < n; i++) {
        if (i) a1_sb_put(a1_s(delim), a1_n(delim));
        a1_sb_put(a1_s(it[i]), a1_n(it[i]));
    }
    return a1_sb_end();
}

A1_EXPORT("a1_b_split") a1v a1_b_split(a1v s, a1v delim) {
    need_str(s);
    need_str(delim);
    const u8 *p = a1_s(s), *d = a1_s(delim);
    u32 n = a1_n(s), dn = a1_n(delim);
    if (dn == 0) { /* one string per code point */
        u32 cnt = utf8_count(p, n), i = 0;
        a1v r = a1_coll_alloc(A1_ARR, cnt, cnt);
        for (u32 k = 0; k < cnt; k++) {
            u32 at = i;
            a1_utf8_next(p, &i);
            a1_items(r)[k] = a1_str_from(p + at, i - at);
        }
        return r;
    }
    u32 cnt = 1;
    for (i32 at = find(p, n, d, dn, 0); at >= 0; at = find(p, n, d, dn, (u32)at + dn)) cnt++;
    a1v r = a1_coll_alloc(A1_ARR, cnt, cnt);
    u32 from = 0, k = 0;
    for (i32 at = find(p, n, d, dn, 0); at >= 0; at = find(p, n, d, dn, (u32)at + dn)) {
        a1v part = sub_bytes(s, from, (u32)at);
        a1_items(r)[k++] = part;
        from = (u32)at + dn;
    }
    a1_items(r)[k] = sub_bytes(s, from, n);
    return r;
}

/* s with every occurrence of old replaced by new (Rust str::replace: an
 * empty old matches before every code point and at the end). */
static a1v replace_all(a1v s, a1v old, a1v nw) {
    const u8 *p = a1_s(s), *o = a1_s(old);
    u32 n = a1_n(s), on = a1_n(old);
    if (on == 0) {
        a1_sb_begin();
        u32 i = 0;
        while (i < n) {
            a1_sb_put(a1_s(nw), a1_n(nw));
            u32 at = i;
            a1_utf8_next(p, &i);
            a1_sb_put(p + at, i - at);
        }
        a1_sb_put(a1_s(nw), a1_n(nw));
        return a1_sb_end();
    }
    i32 at = find(p, n, o, on, 0);
    if (at < 0) return s;
    a1_sb_begin();
    u32 from = 0;
    for (; at >= 0; at = find(p, n, o, on, from)) {
        a1_sb_put(p + from, (u32)at - from);
        a1_sb_put(a1_s(nw), a1_n(nw));
        from = (u32)at + on;
    }
    a1_sb_put(p + from, n - from);
    return a1_sb_end();
}

A1_EXPORT("a1_b_replace") a1v a1_b_replace(a1v s, a1v old, a1v nw) {
    need_str(s);
    need_str(old);
    need_str(nw);
    return replace_all(s, old, nw);
}

/* ---- trimming ------------------------------------------------------------------ */

static int in_cutset(u32 cp, a1v cut) {
    const u8 *c = a1_s(cut);
    u32 n = a1_n(cut), i = 0;
    while (i < n)
        if (a1_utf8_next(c, &i) == cp) return 1;
    return 0;
}

static int is_white(u32 c) { /* Unicode White_Space, Rust's char::is_whitespace */
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85) return 0;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Trims code points matching (cutset, or white space when cut is 0) from both
 * ends (trim_left/trim_right are host builtins). */
static a1v trim_by(a1v s, a1v cut) {
    const u8 *p = a1_s(s);
    u32 n = a1_n(s), from = 0, to = n;
    while (from < to) {
        u32 i = from, cp = a1_utf8_next(p, &i);
        if (!(cut ? in_cutset(cp, cut) : is_white(cp))) break;
        from = i;
    }
    while (to > from) {
        u32 j = utf8_prev(p, to), k = j, cp = a1_utf8_next(p, &k);
        if (!(cut ? in_cutset(cp, cut) : is_white(cp))) break;
        to = j;
    }
    return sub_bytes(s, from, to);
}

A1_EXPORT("a1_b_trim") a1v a1_b_trim(a1v s, a1v cut) {
    need_str(s);
    need_str(cut);
    return trim_by(s, cut);
}

A1_EXPORT("a1_b_trim_space") a1v a1_b_trim_space(a1v s) {
    need_str(s);
    return trim_by(s, 0);
}

A1_EXPORT("a1_b_trim_prefix") a1v a1_b_trim_prefix(a1v s, a1v p) {
    need_str(s);
    need_str(p);
    return has_prefix(s, p) ? sub_bytes(s, a1_n(p), a1_n(s)) : s;
}

A1_EXPORT("a1_b_trim_suffix") a1v a1_b_trim_suffix(a1v s, a1v p) {
    need_str(s);
    need_str(p);
    return has_suffix(s, p) ? sub_bytes(s, 0, a1_n(s) - a1_n(p)) : s;
}

/* ---- positions ------------------------------------------------------------------ */

A1_EXPORT("a1_b_indexof") a1v a1_b_indexof(a1v s, a1v sub) {
    need_str(s);
    need_str(sub);
    const u8 *p = a1_s(s);
    u32 n = a1_n(s);
    if (n == 0) return a1_num(-1); /* regorus walks code points: none in "" */
    i32 at = find(p, n, a1_s(sub), a1_n(sub), 0);
    if (at < 0 || (u32)at >= n) return a1_num(-1);
    return a1_num((double)utf8_count(p, (u32)at));
}

A1_EXPORT("a1_b_substring") a1v a1_b_substring(a1v s, a1v off, a1v len) {
    need_str(s);
    a1_need(off, A1_NUM);
    a1_need(len, A1_NUM);
    double o = a1_f(off), l = a1_f(len);
    const double lim = 9223372036854775808.0;
    int o_int = a1_is_int(o) && o >= -lim && o < lim;
    int l_int = a1_is_int(l) && l >= -lim && l < lim;
    if (o_int && o < 0) a1_fail(E_RANGE);
    if (!o_int || !l_int) return a1_str_from(0, 0);
    const u8 *p = a1_s(s);
    u32 n = a1_n(s), i = 0;
    for (double k = 0; k < o && i < n; k++) a1_utf8_next(p, &i);
    u32 from = i;
    if (l < 0) return sub_bytes(s, from, n);
    for (double k = 0; k < l && i < n; k++) a1_utf8_next(p, &i);
    return sub_bytes(s, from, i);
}

A1_EXPORT("a1_b_strings_reverse") a1v a1_b_strings_reverse(a1v s) {
    need_str(s);
    const u8 *p = a1_s(s);
    u32 n = a1_n(s);
    a1v r = a1_str_new(n);
    u8 *out = a1_p(r) + 8;
    u32 i = 0;
    while (i < n) {
        u32 at = i;
        a1_utf8_next(p, &i);
        memcpy(out + n - i, p + at, i - at);
    }
    return r;
}

/* ---- values as text (a1_to_string) ------------------------------------------------ */

static void put_json_str(a1v s) {
    static const u8 hex[] = "0123456789abcdef";
    const u8 *p = a1_s(s);
    u32 n = a1_n(s), from = 0;
    a1_sb_putc('"');
    for (u32 i = 0; i < n; i++) {
        u8 c = p[i], e = 0;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        a1_sb_put(p + from, i - from);
        from = i + 1;
        switch (c) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '\b': e = 'b'; break;
        case '\f': e = 'f'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        case '\t': e = 't'; break;
        }
        if (e) {
            u8 b[2] = {'\\', e};
            a1_sb_put(b, 2);
        } else {
            u8 b[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            a1_sb_put(b, 6);
        }
    }
    a1_sb_put(p + from, n - from);
    a1_sb_putc('"');
}

/* Kept out of put_val so that its recursion has a small stack frame. */
static __attribute__((noinline)) void put_num(a1v v) {
    u8 buf[A1_NUMBUF];
    a1_sb_put(buf, a1_is_i64(v) ? a1_fmt_i64_base(a1_i(v), 10, 0, buf) : a1_fmt_num(a1_f(v), buf));
}

/* regorus's to_string: strings inside collections are JSON-quoted. */
static void put_val(a1v v, int quoted) {
    switch (a1_tag0(v)) {
    case A1_NULL:
        a1_sb_put((const u8 *)"null", 4);
        return;
    case A1_BOOL:
        if (a1_n(v)) a1_sb_put((const u8 *)"true", 4);
        else a1_sb_put((const u8 *)"false", 5);
        return;
    case A1_NUM:
        put_num(v);
        return;
    case A1_STR:
        if (quoted) put_json_str(v);
        else a1_sb_put(a1_s(v), a1_n(v));
        return;
    case A1_ARR:
    case A1_SET: {
        int arr = a1_tag_of(v) == A1_ARR;
        a1_sb_putc(arr ? '[' : '{');
        for (u32 i = 0; i < a1_n(v); i++) {
            if (i) a1_sb_put((const u8 *)", ", 2);
            put_val(a1_items(v)[i], 1);
        }
        a1_sb_putc(arr ? ']' : '}');
        return;
    }
    case A1_OBJ:
        a1_sb_putc('{');
        for (u32 i = 0; i < a1_n(v); i++) {
            if (i) a1_sb_put((const u8 *)", ", 2);
            put_val(a1_items(v)[2 * i], 1);
            a1_sb_put((const u8 *)": ", 2);
            put_val(a1_items(v)[2 * i + 1], 1);
        }
        a1_sb_putc('}');
        return;
    default:
        a1_fail(E_INTERNAL);
    }
}

/* The string regorus's sprintf("%v") gives for v (used by the compiler for
 * string interpolation and by the host for messages). */
A1_EXPORT("a1_to_string") a1v a1_to_string(a1v v) {
    if (!v) a1_fail(E_INTERNAL);
    if (a1_tag_of(v) == A1_STR) return v;
    a1_sb_begin();
    put_val(v, 0);
    return a1_sb_end();
}
