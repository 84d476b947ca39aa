/* Numbers: exact decimal formatting and parsing without libc, plus the
 * number builtins.
 *
 * Formatting follows regorus: integers print exactly, other numbers as Rust's
 * f64 Display does (the shortest digits that round-trip, never an exponent),
 * computed with Burger & Dybvig's free-format algorithm on big integers.
 * Parsing is correctly rounded: a fast path for short inputs (Clinger), big
 * integer division otherwise. Both are rare on the hot path. */
#include "a1rt.h"

/* ---- small big integers ------------------------------------------------ */

#define BN_WORDS 132 /* 4224 bits: 800 digits over 10^1130 when parsing */

typedef struct {
    u32 n; /* used words, no leading zero words */
    u32 w[BN_WORDS];
} bn;

static void bn_set(bn *a, u64 x) {
    a->n = 0;
    while (x) {
        a->w[a->n++] = (u32)x;
        x >>= 32;
    }
}

static void bn_copy(bn *d, const bn *s) {
    d->n = s->n;
    __builtin_memcpy(d->w, s->w, s->n * 4);
}

static void bn_mul_add_small(bn *a, u32 m, u32 add) {
    u64 carry = add;
    for (u32 i = 0; i < a->n; i++) {
        u64 t = (u64)a->w[i] * m + carry;
        a->w[i] = (u32)t;
        carry = t >> 32;
    }
    if (carry) {
        if (a->n >= BN_WORDS) a1_fail(E_INTERNAL);
        a->w[a->n++] = (u32)carry;
    }
}

static void bn_mul_pow10(bn *a, u32 e) {
    while (e >= 9) {
        bn_mul_add_small(a, 1000000000u, 0);
        e -= 9;
    }
    static const u32 p10[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
    if (e) bn_mul_add_small(a, p10[e], 0);
}

static void bn_shl(bn *a, u32 bits) {
    if (!a->n) return;
    u32 words = bits >> 5, b = bits & 31;
    if (a->n + words + 1 > BN_WORDS) a1_fail(E_INTERNAL);
    u32 n = a->n;
    a->w[n + words] = 0;
    for (u32 i = n; i-- > 0;) {
        u64 t = (u64)a->w[i] << b;
        a->w[i + words + 1] |= (u32)(t >> 32);
        a->w[i + words] = (u32)t;
    }
    for (u32 i = 0; i < words; i++) a->w[i] = 0;
    a->n = n + words + 1;
    while (a->n && !a->w[a->n - 1]) a->n--;
}

static i32 bn_cmp(const bn *a, const bn *b) {
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    for (u32 i = a->n; i-- > 0;)
        if (a->w[i] != b->w[i]) return a->w[i] < b->w[i] ? -1 : 1;
    return 0;
}

/* d = a + b */
static void bn_add(bn *d, const bn *a, const bn *b) {
    const bn *l = a->n >= b->n ? a : b, *s = a->n >= b->n ? b : a;
    u64 carry = 0;
    u32 i = 0;
    for (; i < l->n; i++) {
        u64 t = (u64)l->w[i] + (i < s->n ? s->w[i] : 0) + carry;
        d->w[i] = (u32)t;
        carry = t >> 32;
    }
    if (carry) {
        if (i >= BN_WORDS) a1_fail(E_INTERNAL);
        d->w[i++] = (u32)carry;
    }
    d->n = i;
}

/* a -= b, requires a >= b */
static void bn_sub(bn *a, const bn *b) {
    i64 borrow = 0;
    for (u32 i = 0; i < a->n; i++) {
        i64 t = (i64)a->w[i] - (i < b->n ? b->w[i] : 0) - borrow;
        borrow = t < 0;
        a->w[i] = (u32)t;
    }
    while (a->n && !a->w[a->n - 1]) a->n--;
}

static u32 bn_divmod_small(bn *a, u32 d);

static u32 bn_bits(const bn *a) {
    if (!a->n) return 0;
    return a->n * 32 - (u32)__builtin_clz(a->w[a->n - 1]);
}

/* ---- formatting ---------------------------------------------------------- */

/* Shortest digits of v > 0 finite: writes digits, returns their count, and
 * sets *k so that v ~= 0.d1d2...dn * 10^k. Ties round up, like Rust. */
static u32 shortest(double v, u8 *digits, i32 *k) {
    u64 bits;
    __builtin_memcpy(&bits, &v, 8);
    u32 be = (u32)(bits >> 52) & 0x7FF;
    u64 f = bits & ((1ull << 52) - 1);
    i32 e;
    if (be == 0) {
        e = -1074;
    } else {
        f |= 1ull << 52;
        e = (i32)be - 1075;
    }
    int even = (f & 1) == 0;
    bn r, s, mp, mm, t;
    if (e >= 0) {
        if (f != (1ull << 52)) {
            bn_set(&r, f);
            bn_shl(&r, (u32)e + 1);
            bn_set(&s, 2);
            bn_set(&mp, 1);
            bn_shl(&mp, (u32)e);
            bn_copy(&mm, &mp);
        } else {
            bn_set(&r, f);
            bn_shl(&r, (u32)e + 2);
            bn_set(&s, 4);
            bn_set(&mp, 1);
            bn_shl(&mp, (u32)e + 1);
            bn_set(&mm, 1);
            bn_shl(&mm, (u32)e);
        }
    } else {
        if (be <= 1 || f != (1ull << 52)) {
            bn_set(&r, f);
            bn_shl(&r, 1);
            bn_set(&s, 1);
            bn_shl(&s, (u32)(1 - e));
            bn_set(&mp, 1);
            bn_set(&mm, 1);
        } else {
            bn_set(&r, f);
            bn_shl(&r, 2);
            bn_set(&s, 1);
            bn_shl(&s, (u32)(2 - e));
            bn_set(&mp, 2);
            bn_set(&mm, 1);
        }
    }
    /* Estimate k from the top bit; it is at most two below the answer. */
    i32 top = e + 63 - __builtin_clzll(f);
    double est = (double)top * 0.30102999566398114 - 1e-10;
    i32 kk = (i32)est;
    if ((double)kk < est) kk++;
    if (kk >= 0) {
        bn_mul_pow10(&s, (u32)kk);
    } else {
        bn_mul_pow10(&r, (u32)-kk);
        bn_mul_pow10(&mp, (u32)-kk);
        bn_mul_pow10(&mm, (u32)-kk);
    }
    for (;;) { /* fixup: make (r + m+) / s < 1 */
        bn_add(&t, &r, &mp);
        i32 c = bn_cmp(&t, &s);
        if (even ? c >= 0 : c > 0) {
            bn_mul_add_small(&s, 10, 0);
            kk++;
        } else {
            break;
        }
    }
    *k = kk;
    u32 nd = 0;
    for (;;) {
        bn_mul_add_small(&r, 10, 0);
        bn_mul_add_small(&mp, 10, 0);
        bn_mul_add_small(&mm, 10, 0);
        u32 d = 0;
        while (bn_cmp(&r, &s) >= 0) {
            bn_sub(&r, &s);
            d++;
        }
        i32 c1 = bn_cmp(&r, &mm);
        int tc1 = even ? c1 <= 0 : c1 < 0;
        bn_add(&t, &r, &mp);
        i32 c2 = bn_cmp(&t, &s);
        int tc2 = even ? c2 >= 0 : c2 > 0;
        if (!tc1 && !tc2) {
            digits[nd++] = (u8)('0' + d);
            if (nd >= 20) a1_fail(E_INTERNAL);
            continue;
        }
        if (tc1 && tc2) {
            bn_add(&t, &r, &r);
            if (bn_cmp(&t, &s) >= 0) d++;
        } else if (tc2) {
            d++;
        }
        digits[nd++] = (u8)('0' + d);
        return nd;
    }
}

static u32 fmt_u64(u64 x, u8 *out) {
    u8 tmp[24];
    u32 n = 0;
    do {
        tmp[n++] = (u8)('0' + x % 10);
        x /= 10;
    } while (x);
    for (u32 i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

/* What both formats print first: "NaN", or the sign and then "inf" as
 * Display prints them. Returns the bytes written; *done says whether that was
 * the whole number (NaN or infinite); *x is left without its sign. */
static u32 fmt_sign(double *x, u8 *out, int *done) {
    u32 o = 0;
    *done = 1;
    if (*x != *x) {
        __builtin_memcpy(out, "NaN", 3);
        return 3;
    }
    if (__builtin_signbit(*x)) {
        out[o++] = '-';
        *x = -*x;
    }
    if (*x - *x != 0) {
        __builtin_memcpy(out + o, "inf", 3);
        return o + 3;
    }
    *done = 0;
    return o;
}

u32 a1_fmt_num(double x, u8 *out) {
    int done;
    u32 o = fmt_sign(&x, out, &done);
    if (done) return o;
    if (x == 0) {
        out[o++] = '0';
        return o;
    }
    if (x < 18446744073709551616.0 && __builtin_trunc(x) == x) return o + fmt_u64((u64)x, out + o);
    u8 d[24];
    i32 k;
    u32 n = shortest(x, d, &k);
    if (k <= 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (i32 i = 0; i < -k; i++) out[o++] = '0';
        for (u32 i = 0; i < n; i++) out[o++] = d[i];
    } else if ((u32)k >= n) {
        for (u32 i = 0; i < n; i++) out[o++] = d[i];
        for (u32 i = n; i < (u32)k; i++) out[o++] = '0';
    } else {
        for (u32 i = 0; i < (u32)k; i++) out[o++] = d[i];
        out[o++] = '.';
        for (u32 i = (u32)k; i < n; i++) out[o++] = d[i];
    }
    return o;
}

/* ---- parsing --------------------------------------------------------------- */

/* The top 64 bits of D / P (D, P != 0) as q * 2^e2, with sticky set when
 * bits below were dropped: binary long division. Clobbers D and P. */
static u64 bn_div_top(bn *D, bn *P, i32 *e2, int *sticky) {
    i32 sh = 63 - ((i32)bn_bits(D) - (i32)bn_bits(P));
    if (sh > 0) bn_shl(D, (u32)sh);
    else if (sh < 0) bn_shl(P, (u32)-sh);
    bn T;
    u64 q = 0;
    for (i32 bit = 63; bit >= 0; bit--) {
        bn_copy(&T, P);
        bn_shl(&T, (u32)bit);
        if (bn_cmp(D, &T) >= 0) {
            bn_sub(D, &T);
            q |= 1ull << bit;
        }
    }
    *sticky = D->n != 0;
    *e2 = -sh;
    return q;
}

static double pow2(i32 k) { /* -1074 <= k <= 1023 */
    u64 bits = k >= -1022 ? (u64)(k + 1023) << 52 : 1ull << (k + 1074);
    double d;
    __builtin_memcpy(&d, &bits, 8);
    return d;
}

/* q * 2^e2 (q != 0), plus sticky lower bits, rounded half-even to a double.
 * Returns 0 on overflow. */
static int round_to_double(u64 q, i32 e2, int sticky, double *out) {
    i32 lz = __builtin_clzll(q);
    q <<= lz;
    e2 -= lz; /* q in [2^63, 2^64) */
    i32 drop = 11;
    if (e2 + 11 < -1074) drop = -1074 - e2;
    u64 m;
    if (drop >= 65) {
        m = 0;
    } else if (drop == 64) {
        u64 rest = (q & ~(1ull << 63)) | (u64)sticky;
        m = rest ? 1 : 0; /* exactly half rounds to even (0) */
    } else {
        m = q >> drop;
        u64 rbit = (q >> (drop - 1)) & 1;
        u64 rest = (q & ((1ull << (drop - 1)) - 1)) | (u64)sticky;
        if (rbit && (rest || (m & 1))) m++;
    }
    i32 ex = e2 + drop;
    if (m == 0) {
        *out = 0;
        return 1;
    }
    if (m == (1ull << 53)) {
        m >>= 1;
        ex++;
    }
    if (ex > 971) return 0;
    *out = (double)m * pow2(ex);
    return 1;
}

static const double k_p10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int is_ws(u8 c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

#define MAX_DIGITS 800

int a1_parse_num(const u8 *s, u32 n, double *out) {
    u32 i = 0;
    while (i < n && is_ws(s[i])) i++;
    while (n > i && is_ws(s[n - 1])) n--;
    if (i >= n) return 0;
    int neg = 0;
    if (s[i] == '-') {
        neg = 1;
        i++;
    }
    if (i >= n || s[i] < '0' || s[i] > '9') return 0;
    /* significant digits (leading zeros dropped), and the decimal exponent */
    u8 dig[MAX_DIGITS + 1];
    u32 nd = 0;
    int truncated = 0;
    i64 exp10 = 0;
    if (s[i] == '0') {
        i++;
    } else {
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (nd < MAX_DIGITS) dig[nd++] = s[i] - '0';
            else {
                truncated |= s[i] != '0';
                exp10++;
            }
            i++;
        }
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9') return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (nd == 0 && s[i] == '0') {
                exp10--;
            } else if (nd < MAX_DIGITS) {
                dig[nd++] = s[i] - '0';
                exp10--;
            } else {
                truncated |= s[i] != '0';
            }
            i++;
        }
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int eneg = 0;
        if (i < n && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        if (i >= n || s[i] < '0' || s[i] > '9') return 0;
        i64 ev = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (ev < 100000000) ev = ev * 10 + (s[i] - '0');
            i++;
        }
        exp10 += eneg ? -ev : ev;
    }
    if (i != n) return 0;
    while (nd && dig[nd - 1] == 0) { /* trailing zeros into the exponent */
        nd--;
        exp10++;
    }
    double r;
    if (nd == 0) {
        r = 0;
    } else if (exp10 + nd > 310) {
        return 0; /* overflow: serde_json refuses it too */
    } else if (exp10 + nd < -330) {
        r = 0;
    } else {
        if (truncated) { /* a sticky digit below the kept ones */
            dig[nd++] = 1;
            exp10--;
        }
        u64 small = 0;
        if (nd <= 15) {
            for (u32 j = 0; j < nd; j++) small = small * 10 + dig[j];
        }
        if (nd <= 15 && exp10 >= -22 && exp10 <= 22) {
            r = (double)small;
            r = exp10 >= 0 ? r * k_p10[exp10] : r / k_p10[-exp10];
        } else {
            bn D, P;
            D.n = 0;
            for (u32 j = 0; j < nd; j++) bn_mul_add_small(&D, 10, dig[j]);
            u64 q;
            i32 e2;
            int sticky = 0;
            if (exp10 >= 0) {
                bn_mul_pow10(&D, (u32)exp10);
                u32 b = bn_bits(&D);
                if (b <= 64) {
                    q = D.n > 1 ? ((u64)D.w[1] << 32 | D.w[0]) : D.w[0];
                    e2 = 0;
                } else {
                    /* top 64 bits, sticky for the rest */
                    u32 sh = b - 64, wi = sh >> 5, bi = sh & 31;
                    u64 lo = D.w[wi], mid = wi + 1 < D.n ? D.w[wi + 1] : 0,
                        hi = wi + 2 < D.n ? D.w[wi + 2] : 0;
                    q = bi ? (lo >> bi) | (mid << (32 - bi)) | (hi << (64 - bi)) : (lo | mid << 32);
                    for (u32 j = 0; j < wi; j++) sticky |= D.w[j] != 0;
                    if (bi) sticky |= (D.w[wi] & ((1u << bi) - 1)) != 0;
                    e2 = (i32)sh;
                }
            } else {
                bn_set(&P, 1);
                bn_mul_pow10(&P, (u32)-exp10);
                q = bn_div_top(&D, &P, &e2, &sticky);
            }
            if (!round_to_double(q, e2, sticky, &r)) return 0;
        }
    }
    *out = neg ? -r : r;
    return 1;
}

double a1_int_ratio(i64 a, i64 b) {
    u64 ua = a < 0 ? 0 - (u64)a : (u64)a, ub = b < 0 ? 0 - (u64)b : (u64)b;
    bn D, P;
    bn_set(&D, ua);
    bn_set(&P, ub);
    i32 e2;
    int sticky;
    u64 q = bn_div_top(&D, &P, &e2, &sticky);
    double r;
    if (!round_to_double(q, e2, sticky, &r)) a1_fail(E_INTERNAL); /* |a / b| < 2^64 */
    return (a < 0) != (b < 0) ? -r : r;
}

/* ---- number builtins --------------------------------------------------------- */

static a1v num_out(double r) {
    if (!(r - r == 0)) a1_fail(E_RANGE);
    if (r == 0) r = 0;
    return a1_num(r);
}

A1_EXPORT("a1_b_abs") a1v a1_b_abs(a1v x) {
    a1_need(x, A1_NUM);
    if (a1_is_i64(x)) {
        i64 i = a1_i(x);
        if (i == (i64)(1ull << 63)) a1_fail(E_RANGE); /* 2^63: past int64 */
        return a1_int(i < 0 ? -i : i);
    }
    double d = a1_f(x);
    return num_out(d < 0 ? -d : d);
}

/* ceil, floor and round leave an integer as it is (a flagged one included). */
A1_EXPORT("a1_b_ceil") a1v a1_b_ceil(a1v x) {
    a1_need(x, A1_NUM);
    if (a1_is_i64(x)) return x;
    return num_out(__builtin_ceil(a1_f(x)));
}

A1_EXPORT("a1_b_floor") a1v a1_b_floor(a1v x) {
    a1_need(x, A1_NUM);
    if (a1_is_i64(x)) return x;
    return num_out(__builtin_floor(a1_f(x)));
}

/* Half away from zero. */
A1_EXPORT("a1_b_round") a1v a1_b_round(a1v x) {
    a1_need(x, A1_NUM);
    if (a1_is_i64(x)) return x;
    double d = a1_f(x), t = __builtin_trunc(d), fr = d - t;
    if (fr >= 0.5) t += 1;
    else if (fr <= -0.5) t -= 1;
    return num_out(t);
}

/* A JSON integer (no fraction or exponent, surrounding JSON whitespace
 * allowed) beyond 2^53: 1 with *out when it fits int64, -1 when it does not,
 * 0 for anything else (a double parses it). */
static int parse_big_int(const u8 *s, u32 n, i64 *out) {
    u32 i = 0;
    while (i < n && is_ws(s[i])) i++;
    while (n > i && is_ws(s[n - 1])) n--;
    int neg = i < n && s[i] == '-';
    i += (u32)neg;
    if (i >= n || s[i] < '1' || s[i] > '9' || n - i < 16) return 0; /* within 2^53 */
    u64 v = 0;
    int over = 0;
    for (u32 j = i; j < n; j++) {
        if (s[j] < '0' || s[j] > '9') return 0;
        u64 d = (u64)(s[j] - '0');
        if (v > (0xFFFFFFFFFFFFFFFFull - d) / 10) over = 1;
        else v = v * 10 + d;
    }
    if (!over && v <= (u64)A1_TWO53) return 0;
    if (over || v > 0x7FFFFFFFFFFFFFFFull + (u64)neg) return -1;
    *out = neg ? (i64)(0 - v) : (i64)v;
    return 1;
}

A1_EXPORT("a1_b_to_number") a1v a1_b_to_number(a1v x) {
    switch (a1_tag0(x)) {
    case A1_NULL:
        return a1_num(0);
    case A1_BOOL:
        return a1_num(a1_n(x) ? 1 : 0);
    case A1_NUM:
        return x;
    case A1_STR: {
        i64 i;
        int k = parse_big_int(a1_s(x), a1_n(x), &i);
        if (k > 0) return a1_int(i);
        if (k < 0) a1_fail(E_RANGE); /* an integer past int64: never a rounded double */
        double d;
        if (!a1_parse_num(a1_s(x), a1_n(x), &d)) a1_fail(E_RANGE);
        return a1_num(d);
    }
    default:
        a1_fail(E_TYPE);
    }
}

static u32 bn_divmod_small(bn *a, u32 d) {
    u64 rem = 0;
    for (u32 i = a->n; i-- > 0;) {
        u64 cur = (rem << 32) | a->w[i];
        a->w[i] = (u32)(cur / d);
        rem = cur % d;
    }
    while (a->n && !a->w[a->n - 1]) a->n--;
    return (u32)rem;
}

/* Writes |x| (integral, finite) in base 2, 8, 10 or 16, exactly, and returns
 * the length (at most A1_INTBUF - 1). */
static u32 fmt_abs_int(double x, u32 base, int upper, u8 *out) {
    const u8 *alpha = (const u8 *)(upper ? "0123456789ABCDEF" : "0123456789abcdef");
    u8 tmp[A1_INTBUF];
    u32 n = 0;
    if (x < 18446744073709551616.0) {
        u64 v = (u64)x;
        do {
            tmp[n++] = alpha[v % base];
            v /= base;
        } while (v);
    } else { /* beyond u64: the double's exact value through a big integer */
        u64 bits;
        __builtin_memcpy(&bits, &x, 8);
        bn v;
        bn_set(&v, (bits & ((1ull << 52) - 1)) | (1ull << 52));
        bn_shl(&v, (u32)((bits >> 52) & 0x7FF) - 1075);
        if (base == 10) {
            while (v.n) {
                u32 chunk = bn_divmod_small(&v, 1000000000u);
                for (int k = 0; k < 9; k++) {
                    tmp[n++] = (u8)('0' + chunk % 10);
                    chunk /= 10;
                }
            }
            while (n > 1 && tmp[n - 1] == '0') n--;
        } else {
            u32 k = base == 2 ? 1 : base == 8 ? 3 : 4, total = bn_bits(&v);
            for (u32 pos = 0; pos < total; pos += k) {
                u32 d = 0;
                for (u32 b = 0; b < k; b++) {
                    u32 at = pos + b;
                    if (at < total && (v.w[at >> 5] >> (at & 31)) & 1) d |= 1u << b;
                }
                tmp[n++] = alpha[d];
            }
        }
    }
    for (u32 i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

u32 a1_fmt_i64_base(i64 x, u32 base, int upper, u8 *out) {
    const u8 *alpha = (const u8 *)(upper ? "0123456789ABCDEF" : "0123456789abcdef");
    u8 tmp[72];
    u32 n = 0, o = 0;
    u64 v = (u64)x;
    if (x < 0) {
        out[o++] = '-';
        v = 0 - v;
    }
    do {
        tmp[n++] = alpha[v % base];
        v /= base;
    } while (v);
    for (u32 i = 0; i < n; i++) out[o + i] = tmp[n - 1 - i];
    return o + n;
}

/* x % y for integral doubles, exactly (the remainder of two doubles is
 * always a double), truncated like Rust's: the sign of x. */
double a1_int_rem(double x, double y) {
    const double lim = 9223372036854775808.0; /* 2^63 */
    if (x > -lim && x < lim && y > -lim && y < lim) return (double)((i64)x % (i64)y);
    double r = x < 0 ? -x : x, ay = y < 0 ? -y : y;
    while (r >= ay) {
        double t = ay;
        while (t <= r * 0.5) t *= 2;
        r -= t; /* exact: t <= r < 2t */
    }
    return x < 0 ? -r : r;
}

A1_EXPORT("a1_b_format_int") a1v a1_b_format_int(a1v x, a1v base) {
    a1_need(x, A1_NUM);
    a1_need(base, A1_NUM);
    double d = a1_f(x), b = a1_f(base);
    if (a1_is_i64(x)) {
        if (!(b == 2 || b == 8 || b == 10 || b == 16)) a1_fail(E_RANGE);
        u8 buf[72];
        return a1_str_from(buf, a1_fmt_i64_base(a1_i(x), (u32)b, 0, buf));
    }
    int neg = d < 0;
    if (neg) d = -d;
    d = __builtin_floor(d);
    if (!(b == 2 || b == 8 || b == 10 || b == 16)) a1_fail(E_RANGE);
    u8 buf[A1_INTBUF + 1];
    u32 o = 0;
    if (neg) buf[o++] = '-';
    o += fmt_abs_int(d, (u32)b, 0, buf + o);
    return a1_str_from(buf, o);
}

/* numbers.range's array from x towards y by step 1, exactly for integers
 * (flagged ones included), through doubles for integral floats beyond 2^53.
 * (numbers.range_step is a host builtin.) */
static a1v range_of(a1v a, a1v b) {
    a1n x = a1_n_of(a), y = a1_n_of(b), s = a1_n_dbl(1);
    double fs = a1_n_f(s);
    if (!a1_is_int(a1_n_f(x)) || !a1_is_int(a1_n_f(y))) a1_fail(E_RANGE);
    if (x.exact && y.exact && s.exact) {
        u64 span = y.i >= x.i ? (u64)y.i - (u64)x.i : (u64)x.i - (u64)y.i;
        if (span >> 63) a1_fail(E_RANGE); /* regorus: not an i64 */
        u64 cnt = span / (u64)s.i + 1;
        if (cnt >= 16777216u) a1_fail(E_OOM); /* 2^24 elements: past any page cap */
        u32 n = (u32)cnt;
        a1v r = a1_coll_alloc(A1_ARR, n, n);
        a1v *it = a1_items(r);
        u64 at = (u64)x.i, step = y.i >= x.i ? (u64)s.i : 0 - (u64)s.i;
        for (u32 i = 0; i < n; i++, at += step) it[i] = a1_int((i64)at);
        return r;
    }
    double fx = a1_n_f(x), fy = a1_n_f(y);
    double span = fy >= fx ? fy - fx : fx - fy;
    if (span >= 9223372036854775808.0) a1_fail(E_RANGE);
    double cnt = __builtin_floor(span / fs) + 1;
    if (cnt >= 16777216.0) a1_fail(E_OOM);
    u32 n = (u32)cnt;
    a1v r = a1_coll_alloc(A1_ARR, n, n);
    a1v *it = a1_items(r);
    double step = fy >= fx ? fs : -fs;
    for (u32 i = 0; i < n; i++) it[i] = num_out(fx + step * (double)i);
    return r;
}

A1_EXPORT("a1_b_numbers_range") a1v a1_b_numbers_range(a1v a, a1v b) {
    a1_need(a, A1_NUM);
    a1_need(b, A1_NUM);
    return range_of(a, b);
}
