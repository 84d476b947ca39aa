/* String builtins and sprintf, matching regorus (Rust str semantics: UTF-8,
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

/* strings.replace_n(patterns, s): replace each key by its value, in key order. */
A1_EXPORT("a1_b_strings_replace_n") a1v a1_b_strings_replace_n(a1v pats, a1v s) {
    a1_need(pats, A1_OBJ);
    need_str(s);
    u32 n = a1_n(pats);
    const a1v *it = a1_items(pats);
    for (u32 i = 0; i < n; i++) {
        if (a1_tag_of(it[2 * i]) != A1_STR || a1_tag_of(it[2 * i + 1]) != A1_STR) a1_fail(E_TYPE);
    }
    for (u32 i = 0; i < n; i++) s = replace_all(s, it[2 * i], it[2 * i + 1]);
    return s;
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

/* Trims code points matching (cutset, or white space when cut is 0). */
static a1v trim_by(a1v s, a1v cut, int left, int right) {
    const u8 *p = a1_s(s);
    u32 n = a1_n(s), from = 0, to = n;
    if (left) {
        while (from < to) {
            u32 i = from, cp = a1_utf8_next(p, &i);
            if (!(cut ? in_cutset(cp, cut) : is_white(cp))) break;
            from = i;
        }
    }
    if (right) {
        while (to > from) {
            u32 j = utf8_prev(p, to), k = j, cp = a1_utf8_next(p, &k);
            if (!(cut ? in_cutset(cp, cut) : is_white(cp))) break;
            to = j;
        }
    }
    return sub_bytes(s, from, to);
}

A1_EXPORT("a1_b_trim") a1v a1_b_trim(a1v s, a1v cut) {
    need_str(s);
    need_str(cut);
    return trim_by(s, cut, 1, 1);
}

A1_EXPORT("a1_b_trim_left") a1v a1_b_trim_left(a1v s, a1v cut) {
    need_str(s);
    need_str(cut);
    return trim_by(s, cut, 1, 0);
}

A1_EXPORT("a1_b_trim_right") a1v a1_b_trim_right(a1v s, a1v cut) {
    need_str(s);
    need_str(cut);
    return trim_by(s, cut, 0, 1);
}

A1_EXPORT("a1_b_trim_space") a1v a1_b_trim_space(a1v s) {
    need_str(s);
    return trim_by(s, 0, 1, 1);
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

A1_EXPORT("a1_b_indexof_n") a1v a1_b_indexof_n(a1v s, a1v sub) {
    need_str(s);
    need_str(sub);
    const u8 *p = a1_s(s), *q = a1_s(sub);
    u32 n = a1_n(s), qn = a1_n(sub), i = 0, pos = 0;
    a1v r = a1_arr_new(4);
    while (i < n) {
        if (qn <= n - i && memcmp(p + i, q, qn) == 0) r = a1_arr_push(r, a1_num((double)pos));
        a1_utf8_next(p, &i);
        pos++;
    }
    return r;
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

A1_EXPORT("a1_b_strings_count") a1v a1_b_strings_count(a1v s, a1v sub) {
    need_str(s);
    need_str(sub);
    const u8 *p = a1_s(s);
    u32 n = a1_n(s), qn = a1_n(sub);
    if (qn == 0) return a1_num((double)utf8_count(p, n) + 1);
    u32 c = 0;
    for (i32 at = find(p, n, a1_s(sub), qn, 0); at >= 0; at = find(p, n, a1_s(sub), qn, (u32)at + qn))
        c++;
    return a1_num((double)c);
}

/* strings.any_prefix_match / any_suffix_match: search and base are each a
 * string or a collection of strings. */
static void str_or_strs(a1v v) {
    u32 t = a1_tag0(v);
    if (t == A1_STR) return;
    if (t != A1_ARR && t != A1_SET) a1_fail(E_TYPE);
    for (u32 i = 0; i < a1_n(v); i++) need_str(a1_items(v)[i]);
}

static a1v any_match(a1v search, a1v base, int suffix) {
    str_or_strs(search);
    str_or_strs(base);
    u32 ns = a1_tag_of(search) == A1_STR ? 1 : a1_n(search);
    u32 nb = a1_tag_of(base) == A1_STR ? 1 : a1_n(base);
    for (u32 i = 0; i < ns; i++) {
        a1v s = a1_tag_of(search) == A1_STR ? search : a1_items(search)[i];
        for (u32 j = 0; j < nb; j++) {
            a1v b = a1_tag_of(base) == A1_STR ? base : a1_items(base)[j];
            if (suffix ? has_suffix(s, b) : has_prefix(s, b)) return a1_bool(1);
        }
    }
    return a1_bool(0);
}

A1_EXPORT("a1_b_strings_any_prefix_match") a1v a1_b_strings_any_prefix_match(a1v s, a1v b) {
    return any_match(s, b, 0);
}

A1_EXPORT("a1_b_strings_any_suffix_match") a1v a1_b_strings_any_suffix_match(a1v s, a1v b) {
    return any_match(s, b, 1);
}

/* ---- sprintf -------------------------------------------------------------------- */

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

enum { W_NONE, W_ZEROS, W_CELL, W_DECIMALS };

/* regorus's apply_width: pads on the left to w bytes. */
static void put_width(int wk, u32 w, const u8 *s, u32 n) {
    if ((wk == W_ZEROS || wk == W_CELL) && w > n) {
        u8 pad = wk == W_ZEROS ? '0' : ' ';
        for (u32 i = n; i < w; i++) a1_sb_putc(pad);
    }
    a1_sb_put(s, n);
}

/* regorus keeps integers (within 2^53, after arithmetic) apart from floats;
 * a double here counts as its integer when it is integral, below 2^53 and not
 * -0. Only %.Nf, %e and %g print the two differently. */
static int int_like(double x) {
    return a1_is_int(x) && x < 9007199254740992.0 && x > -9007199254740992.0 &&
           !(x == 0 && __builtin_signbit(x));
}

/* %e / %E: an integer prints all its digits (d.ddd e N), a float Rust's {:e}. */
static void put_exp(double x, int upper) {
    u8 buf[A1_INTBUF];
    u32 n;
    if (int_like(x)) {
        n = a1_fmt_int_base(x, 10, 0, buf);
        u32 neg = buf[0] == '-', digits = n - neg;
        a1_sb_put(buf, neg + 1);
        if (digits > 1) {
            a1_sb_putc('.');
            a1_sb_put(buf + neg + 1, digits - 1);
        }
        a1_sb_putc(upper ? 'E' : 'e');
        n = a1_fmt_int_base((double)(digits - 1), 10, 0, buf);
        a1_sb_put(buf, n);
        return;
    }
    n = a1_fmt_exp(x, upper, buf);
    a1_sb_put(buf, n);
}

/* %.Nf of a float: regorus rounds x * 10^N half away from zero, divides back
 * (both in doubles, 10^N by powi) and prints that with N decimals: "NaN" once
 * 10^N overflows (N > 308); past N = 65535 Rust's formatter panics. */
static void put_decimals(double x, u32 prec) {
    if (prec > 0xFFFF) a1_fail(E_RANGE); /* Rust panics: "Formatting argument out of range" */
    double factor = a1_powi(10.0, (i32)prec), y = x * factor, t = __builtin_trunc(y);
    if (y - y == 0) {
        double fr = y - t;
        if (fr >= 0.5) t += 1;
        else if (fr <= -0.5) t -= 1;
    } else {
        t = y; /* inf or NaN */
    }
    a1_sb_fixed(t / factor, prec);
}

/* %g / %G: a sign for negative numbers, then Rust's {:e} of the number (its
 * own sign again: regorus prints "--1.5e0"), or Display when the binary
 * exponent field is 32 or less (zero, subnormals, below 2^-990). */
static void put_general(double x, int upper) {
    u8 buf[A1_NUMBUF];
    u64 bits;
    __builtin_memcpy(&bits, &x, 8);
    if (x < 0) a1_sb_putc('-');
    u32 n = ((bits >> 52) & 0x7FF) > 32 ? a1_fmt_exp(x, upper, buf) : a1_fmt_num(x, buf);
    a1_sb_put(buf, n);
}

static void put_char(u32 cp) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) a1_fail(E_RANGE);
    u8 buf[4];
    a1_sb_put(buf, a1_utf8_put(cp, buf));
}

/* A numeric verb for a flagged integer (beyond 2^53): its exact digits
 * wherever regorus prints an integer's; %g refuses it as regorus does. */
static void put_big_int(u32 verb, int wk, u32 w, i64 x) {
    u8 buf[80];
    u32 n = 0;
    switch (verb) {
    case 'b':
    case 'd':
    case 'o':
    case 'O':
    case 'x':
    case 'X':
        if (verb == 'o' || verb == 'O') {
            buf[n++] = '0';
            buf[n++] = verb == 'o' ? 'O' : 'o';
        }
        n += a1_fmt_i64_base(x, verb == 'b' ? 2 : verb == 'd' ? 10 : (verb == 'o' || verb == 'O') ? 8 : 16,
                             verb == 'X', buf + n);
        if (x < 0) a1_sb_putc('-'); /* regorus prints a negative number's sign twice */
        if (verb == 'b') a1_sb_put(buf, n);
        else put_width(wk, w, buf, n);
        return;
    case 'c':
        if (x < 0) a1_fail(E_RANGE);
        put_char((u32)x);
        return;
    case 'f':
    case 'F':
        n = a1_fmt_i64_base(x, 10, 0, buf);
        put_width(wk, w, buf, n);
        return;
    case 'e':
    case 'E': {
        n = a1_fmt_i64_base(x, 10, 0, buf);
        u32 neg = buf[0] == '-', digits = n - neg;
        a1_sb_put(buf, neg + 1);
        a1_sb_putc('.'); /* beyond 2^53: always more than one digit */
        a1_sb_put(buf + neg + 1, digits - 1);
        a1_sb_putc(verb == 'E' ? 'E' : 'e');
        n = a1_fmt_i64_base((i64)(digits - 1), 10, 0, buf);
        a1_sb_put(buf, n);
        return;
    }
    default: /* %g: "cannot print large float"; other verbs: a number for a non-number verb */
        a1_fail(verb == 'g' || verb == 'G' ? E_RANGE : E_TYPE);
    }
}

/* Format verbs as regorus implements them (including its quirks: a negative
 * number gets its sign twice with %d/%x/%o/%b/%g; %o prefixes "0O", %O "0o";
 * %.N is a precision only for %f of a float; widths pad on the left and only
 * for %d %o %x %X %f; an unknown verb prints nothing for a non-number). */
A1_EXPORT("a1_b_sprintf") a1v a1_b_sprintf(a1v fmt, a1v args) {
    need_str(fmt);
    a1_need(args, A1_ARR);
    const u8 *f = a1_s(fmt);
    u32 fn = a1_n(fmt), i = 0, ai = 0, na = a1_n(args);
    const a1v *av = a1_items(args);
    a1_sb_begin();
    while (i < fn) {
        if (f[i] != '%') {
            u32 from = i;
            while (i < fn && f[i] != '%') i++;
            a1_sb_put(f + from, i - from);
            continue;
        }
        i++;
        if (i >= fn) a1_fail(E_RANGE); /* missing verb after % */
        int wk = W_NONE;
        u32 w = 0, verb;
        if (f[i] == '%') {
            a1_sb_putc('%');
            i++;
            continue;
        }
        if (f[i] == '.' || (f[i] >= '0' && f[i] <= '9')) {
            u8 first = f[i++];
            w = first == '.' ? 0 : (u32)(first - '0');
            while (i < fn && f[i] >= '0' && f[i] <= '9') w = w * 10 + (u32)(f[i++] - '0');
            wk = first == '0' ? W_ZEROS : first == '.' ? W_DECIMALS : W_CELL;
            if (i >= fn) a1_fail(E_RANGE); /* missing verb after width */
        }
        verb = a1_utf8_next(f, &i);
        if (ai >= na) a1_fail(E_RANGE); /* no argument for this verb */
        a1v arg = av[ai++];
        u32 t = a1_tag_of(arg);
        if (verb == 's' || verb == 'v') {
            put_val(arg, 0);
            continue;
        }
        if (t == A1_NUM && a1_is_i64(arg)) {
            put_big_int(verb, wk, w, a1_i(arg));
            continue;
        }
        if (t == A1_NUM) {
            double x = a1_f(arg);
            int integral = a1_is_int(x);
            u8 buf[A1_INTBUF + A1_NUMBUF];
            u32 n = 0;
            const char *sign = x < 0 ? "-" : "";
            switch (verb) {
            case 'b':
            case 'd':
            case 'o':
            case 'O':
            case 'x':
            case 'X':
                if (!integral) a1_fail(E_TYPE);
                if (verb == 'o' || verb == 'O') {
                    buf[n++] = '0';
                    buf[n++] = verb == 'o' ? 'O' : 'o';
                }
                n += a1_fmt_int_base(x, verb == 'b' ? 2 : verb == 'd' ? 10 : (verb == 'o' || verb == 'O') ? 8 : 16,
                                     verb == 'X', buf + n);
                a1_sb_put((const u8 *)sign, *sign ? 1 : 0);
                if (verb == 'b') a1_sb_put(buf, n);
                else put_width(wk, w, buf, n);
                continue;
            case 'c':
                /* regorus takes the integer's low 32 bits as the code point */
                if (!integral || x < 0 || x >= 18446744073709551616.0) a1_fail(E_RANGE);
                put_char((u32)(u64)x);
                continue;
            case 'f':
            case 'F':
                if (wk == W_DECIMALS && !int_like(x)) {
                    put_decimals(x, w);
                    continue;
                }
                n = a1_fmt_num(x, buf);
                put_width(wk, w, buf, n);
                continue;
            case 'e':
            case 'E':
                put_exp(x, verb == 'E');
                continue;
            case 'g':
            case 'G':
                put_general(x, verb == 'G');
                continue;
            default:
                a1_fail(E_TYPE); /* number given for a non-number verb */
            }
        }
        if (verb == '+') {
            /* regorus consumes the next character, failing for %+v */
            if (i < fn) {
                u32 nx = a1_utf8_next(f, &i);
                if (nx == 'v') a1_fail(E_RANGE);
            }
            continue;
        }
        if (verb == 'T' || verb == '#' || verb == 'q' || verb == 'p') a1_fail(E_RANGE);
        /* anything else prints nothing for a non-number */
    }
    if (ai < na) a1_fail(E_RANGE); /* extra arguments */
    return a1_sb_end();
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
