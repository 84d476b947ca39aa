/* a1rt: the A1 policy runtime library (ABI version 1, docs/policy-abi.md).
 *
 * Freestanding C for wasm32: no libc, no imports but env.memory. Every value
 * is a u32 pointer into the shared linear memory (0 = undefined) to an
 * 8-aligned record: u8 tag, u8 flags, u16 reserved, u32 n, payload.
 *
 * This header is shared by every policies/runtime/a1rt*.c file. It exposes
 * the record accessors and the runtime services (allocation, failure,
 * constructors, comparison, string building) that builtins are made of.
 */
#ifndef A1RT_H
#define A1RT_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;
typedef long long i64;
typedef unsigned long usize;

/* A value: pointer to a record in linear memory; 0 is undefined. */
typedef u32 a1v;

enum {
    A1_UNDEF = 0,
    A1_NULL = 1,
    A1_BOOL = 2,
    A1_NUM = 3,
    A1_STR = 4,
    A1_ARR = 5,
    A1_SET = 6,
    A1_OBJ = 7,
};

enum {
    E_TYPE = 1,
    E_DIV0 = 2,
    E_CONFLICT = 3,
    E_OOM = 4,
    E_RANGE = 5,
    E_INTERNAL = 6,
};

#define A1_EXPORT(name) __attribute__((export_name(name)))
#define A1_INLINE static inline __attribute__((always_inline))
#define A1_NORETURN __attribute__((noreturn))

/* ---- record access ---------------------------------------------------- */

A1_INLINE u8 *a1_p(a1v v) { return (u8 *)(usize)v; }
/* Tag of a defined value. */
A1_INLINE u32 a1_tag_of(a1v v) { return *a1_p(v); }
/* Tag, or A1_UNDEF for the undefined pointer 0. */
A1_INLINE u32 a1_tag0(a1v v) { return v ? *a1_p(v) : A1_UNDEF; }
A1_INLINE u32 a1_n(a1v v) { return ((u32 *)a1_p(v))[1]; }
/* A number record's flags bit 0: the payload is an exact i64, an integer
 * beyond 2^53 in magnitude. Every other number holds an f64; an integer
 * within 2^53 is never flagged (one form per value). */
#define A1_NUM_I64 1
#define A1_TWO53 9007199254740992.0
A1_INLINE int a1_is_i64(a1v v) { return a1_p(v)[1] & A1_NUM_I64; }
A1_INLINE i64 a1_i(a1v v) { return *(i64 *)(a1_p(v) + 8); }
/* A number's value as a double (rounded to nearest for a flagged integer). */
A1_INLINE double a1_f(a1v v) {
    return a1_is_i64(v) ? (double)a1_i(v) : *(double *)(a1_p(v) + 8);
}
A1_INLINE const u8 *a1_s(a1v v) { return a1_p(v) + 8; }
/* Array/set elements; object entries as key,value,key,value,... */
A1_INLINE a1v *a1_items(a1v v) { return (a1v *)(a1_p(v) + 8); }
A1_INLINE u32 a1_align8(u32 x) { return (x + 7u) & ~7u; }

/* ---- services ---------------------------------------------------------- */

A1_NORETURN void a1_fail(i32 code);
u32 a1_alloc(u32 size);
u32 a1_heap_top(void);

a1v a1_null(void);
a1v a1_bool(i32 b);
a1v a1_num(double x);
/* A string record of len bytes; the caller fills a1_p(v) + 8. */
a1v a1_str_new(u32 len);
a1v a1_str_from(const u8 *bytes, u32 len);

a1v a1_arr_new(u32 cap);
a1v a1_arr_push(a1v arr, a1v v);
a1v a1_set_new(void);
a1v a1_set_add(a1v set, a1v v);
a1v a1_obj_new(void);
a1v a1_obj_put(a1v obj, a1v k, a1v v);
/* A collection of n items (elements or pairs) with room for cap, n set. */
a1v a1_coll_alloc(u32 tag, u32 n, u32 cap);

i32 a1_cmp(a1v a, a1v b);
i32 a1_eq(a1v a, a1v b);
a1v a1_get(a1v coll, a1v key);
i32 a1_in(a1v v, a1v coll);

/* Type checks for builtins: trap E_TYPE unless v has the tag. */
A1_INLINE void a1_need(a1v v, u32 tag) {
    if (__builtin_expect(!v || a1_tag_of(v) != tag, 0)) a1_fail(E_TYPE);
}

/* True when x is an integral finite double (wasm f64.trunc). */
A1_INLINE int a1_is_int(double x) { return __builtin_trunc(x) == x && x - x == 0; }

/* ---- exact integers (a1rt.c) --------------------------------------------
 * An arithmetic operand: exact (a flagged number, or an integral double
 * within 2^53, which regorus holds as an integer) or a double. Integer with
 * integer is exact, trapping E_RANGE past int64; anything with a
 * non-integral double is double arithmetic, as in regorus. */
typedef struct {
    int exact;
    i64 i; /* when exact */
    double d; /* when not exact */
} a1n;

A1_INLINE a1n a1_n_dbl(double d) {
    a1n r;
    r.exact = __builtin_trunc(d) == d && d >= -A1_TWO53 && d <= A1_TWO53;
    r.i = r.exact ? (i64)d : 0;
    r.d = d;
    return r;
}
/* The operand of number v (the caller checked the tag). */
A1_INLINE a1n a1_n_of(a1v v) {
    if (a1_is_i64(v)) {
        a1n r = {1, a1_i(v), 0};
        return r;
    }
    return a1_n_dbl(*(double *)(a1_p(v) + 8));
}
A1_INLINE double a1_n_f(a1n x) { return x.exact ? (double)x.i : x.d; }
/* The integer of a number value when it is exact (flagged, or an integral
 * double within 2^53). */
A1_INLINE int a1_int_of(a1v v, i64 *out) {
    a1n x = a1_n_of(v);
    *out = x.i;
    return x.exact;
}
/* A number value for x: a double within 2^53, else a flagged record. */
a1v a1_int(i64 x);
/* The value of x: a1_int, or a finite double (E_RANGE otherwise), never -0. */
a1v a1_n_out(a1n x);
/* op '+', '-', '*' of a and b (exact for two integers, E_RANGE past int64). */
a1n a1_n_arith(int op, a1n a, a1n b);
/* -1, 0, 1: a flagged integer against a double, exactly. */
i32 a1_cmp_i64_f64(i64 i, double d);

/* ---- string building at the top of the heap ---------------------------
 * sb_begin opens a string record at the heap top; sb_put* append bytes
 * (growing memory as needed); sb_end closes the record and returns it.
 * Nothing may allocate between sb_begin and sb_end. */
void a1_sb_begin(void);
void a1_sb_put(const u8 *b, u32 n);
void a1_sb_putc(u8 c);
a1v a1_sb_end(void);

/* ---- numbers (a1rt_num.c) ---------------------------------------------- */

/* Formats x like regorus (Rust's f64 Display; exact digits for integers
 * below 2^64) into out (at least A1_NUMBUF bytes); returns the length. */
#define A1_NUMBUF 352
u32 a1_fmt_num(double x, u8 *out);
/* Room for an integral double written in base 2 with its sign (format_int). */
#define A1_INTBUF 1100
/* a / b (b != 0, not dividing a) correctly rounded to a double. */
double a1_int_ratio(i64 a, i64 b);
/* Writes x exactly in base 2, 8, 10 or 16 ('-' first when negative). */
u32 a1_fmt_i64_base(i64 x, u32 base, int upper, u8 *out);
/* x % y for integral x, y (y != 0), exact, with the sign of x. */
double a1_int_rem(double x, double y);
/* Parses a JSON number (RFC 8259 grammar, surrounding JSON whitespace
 * allowed) correctly rounded. Returns 0 on a syntax error or overflow. */
int a1_parse_num(const u8 *s, u32 n, double *out);

/* ---- Unicode (a1rt_case.c, generated) ---------------------------------- */

/* Full case mapping of cp: writes up to 3 code points, returns the count. */
u32 a1_case_lower(u32 cp, u32 *out);
u32 a1_case_upper(u32 cp, u32 *out);
int a1_case_ignorable(u32 cp);
int a1_cased(u32 cp);

/* ---- UTF-8 -------------------------------------------------------------- */

/* Decodes the code point at s[*i] (valid UTF-8 assumed) and advances *i. */
A1_INLINE u32 a1_utf8_next(const u8 *s, u32 *i) {
    u32 c = s[*i];
    if (c < 0x80) { *i += 1; return c; }
    if (c < 0xE0) { c = ((c & 0x1F) << 6) | (s[*i + 1] & 0x3F); *i += 2; return c; }
    if (c < 0xF0) {
        c = ((c & 0x0F) << 12) | ((s[*i + 1] & 0x3Fu) << 6) | (s[*i + 2] & 0x3F);
        *i += 3;
        return c;
    }
    c = ((c & 0x07) << 18) | ((s[*i + 1] & 0x3Fu) << 12) | ((s[*i + 2] & 0x3Fu) << 6) |
        (s[*i + 3] & 0x3F);
    *i += 4;
    return c;
}
/* Encodes cp into out (4 bytes room), returns the byte count. */
A1_INLINE u32 a1_utf8_put(u32 cp, u8 *out) {
    if (cp < 0x80) { out[0] = (u8)cp; return 1; }
    if (cp < 0x800) { out[0] = (u8)(0xC0 | (cp >> 6)); out[1] = (u8)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (u8)(0xE0 | (cp >> 12));
        out[1] = (u8)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (u8)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (u8)(0xF0 | (cp >> 18));
    out[1] = (u8)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (u8)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (u8)(0x80 | (cp & 0x3F));
    return 4;
}

/* memcpy/memmove/memset/memcmp are defined in a1rt.c (clang emits calls). */
void *memcpy(void *d, const void *s, usize n);
void *memmove(void *d, const void *s, usize n);
void *memset(void *d, int c, usize n);
int memcmp(const void *a, const void *b, usize n);

#endif
