/* a1rt core: allocator, constructors, builders, inspection, the total order,
 * membership and arithmetic. See a1rt.h and docs/policy-abi.md. */
#include "a1rt.h"

/* ---- libc-free memory primitives (clang lowers struct copies to these) --- */

void *memcpy(void *d, const void *s, usize n) {
    __builtin_memcpy(d, s, n); /* memory.copy with bulk-memory */
    return d;
}
void *memmove(void *d, const void *s, usize n) {
    __builtin_memmove(d, s, n);
    return d;
}
void *memset(void *d, int c, usize n) {
    __builtin_memset(d, c, n);
    return d;
}
int memcmp(const void *a, const void *b, usize n) {
    const u8 *x = a, *y = b;
    while (n >= 8) {
        u64 p, q;
        __builtin_memcpy(&p, x, 8);
        __builtin_memcpy(&q, y, 8);
        if (p != q) {
            p = __builtin_bswap64(p);
            q = __builtin_bswap64(q);
            return p < q ? -1 : 1;
        }
        x += 8;
        y += 8;
        n -= 8;
    }
    for (usize i = 0; i < n; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

/* ---- allocator ----------------------------------------------------------- */

static u32 heap_start_;
static u32 heap_top_;
static u64 heap_end_; /* bytes of memory currently available */
static i32 err_;

extern char __stack_high; /* top of the C stack (lld, --stack-first) */

A1_EXPORT("a1_err") i32 a1_err(void) { return err_; }

A1_EXPORT("a1_fail") void a1_fail(i32 code) {
    err_ = code;
    __builtin_trap();
}

static void grow_to(u64 need) {
    u64 cur = (u64)__builtin_wasm_memory_size(0) << 16;
    if (need > cur) {
        u64 pages = (need - cur + 0xFFFF) >> 16;
        u64 ask = pages < 16 ? 16 : pages; /* at least 1 MiB at a time */
        if (__builtin_wasm_memory_grow(0, (usize)ask) == (usize)-1) {
            if (ask == pages || __builtin_wasm_memory_grow(0, (usize)pages) == (usize)-1)
                a1_fail(E_OOM);
        }
        cur = (u64)__builtin_wasm_memory_size(0) << 16;
    }
    heap_end_ = cur > 0xFFFFFFF0ull ? 0xFFFFFFF0ull : cur;
}

A1_EXPORT("a1_alloc") u32 a1_alloc(u32 size) {
    u64 p = heap_top_;
    u64 e = p + (((u64)size + 7) & ~7ull);
    if (__builtin_expect(e > heap_end_, 0)) {
        if (e > 0xFFFFFFF0ull) a1_fail(E_OOM);
        grow_to(e);
    }
    heap_top_ = (u32)e;
    return (u32)p;
}

A1_EXPORT("a1_heap_top") u32 a1_heap_top(void) { return heap_top_; }

/* Small non-negative integers and the scalar singletons live in static
 * memory, so the hot path allocates nothing for them. */
#define SMALL_INTS 256
static u32 k_small[SMALL_INTS][4] __attribute__((aligned(8)));
static int small_ready_;
static const u32 k_null[2] __attribute__((aligned(8))) = {A1_NULL, 0};
static const u32 k_false[2] __attribute__((aligned(8))) = {A1_BOOL, 0};
static const u32 k_true[2] __attribute__((aligned(8))) = {A1_BOOL, 1};

static void init_small(void) {
    for (u32 i = 0; i < SMALL_INTS; i++) {
        double d = (double)i;
        k_small[i][0] = A1_NUM;
        k_small[i][1] = 0;
        __builtin_memcpy(&k_small[i][2], &d, 8);
    }
    small_ready_ = 1;
}

A1_EXPORT("a1_reset") void a1_reset(u32 heap_start) {
    /* A trap leaves the C stack pointer wherever it was; every evaluation
     * starts by resetting it (no a1rt frame is live when the policy calls). */
    u32 sp = (u32)(usize)&__stack_high;
    __asm__ volatile(".globaltype __stack_pointer, i32\n\t"
                     "local.get %0\n\t"
                     "global.set __stack_pointer" ::"r"(sp));
    err_ = 0;
    if (!small_ready_) init_small();
    heap_start_ = heap_top_ = a1_align8(heap_start);
    heap_end_ = 0;
    grow_to(heap_top_);
}

/* ---- constructors ---------------------------------------------------------- */

A1_EXPORT("a1_null") a1v a1_null(void) { return (a1v)(usize)k_null; }
A1_EXPORT("a1_bool") a1v a1_bool(i32 b) { return (a1v)(usize)(b ? k_true : k_false); }

A1_EXPORT("a1_num") a1v a1_num(double x) {
    if (x >= 0 && x < SMALL_INTS) {
        u32 i = (u32)x;
        if ((double)i == x && !__builtin_signbit(x)) return (a1v)(usize)k_small[i];
    }
    a1v v = a1_alloc(16);
    u32 *p = (u32 *)a1_p(v);
    p[0] = A1_NUM;
    p[1] = 0;
    __builtin_memcpy(p + 2, &x, 8);
    return v;
}

/* An integer: a double within 2^53, else a flagged record holding the i64
 * (docs/policy-abi.md, "Values"). The host's clock arrives through it. */
A1_EXPORT("a1_int") a1v a1_int(i64 x) {
    if (x >= -(i64)A1_TWO53 && x <= (i64)A1_TWO53) return a1_num((double)x);
    a1v v = a1_alloc(16);
    u32 *p = (u32 *)a1_p(v);
    p[0] = A1_NUM | (A1_NUM_I64 << 8);
    p[1] = 0;
    __builtin_memcpy(p + 2, &x, 8);
    return v;
}

A1_EXPORT("a1_str_new") a1v a1_str_new(u32 len) {
    if (len > 0x7FFFFFF0u) a1_fail(E_OOM);
    a1v v = a1_alloc(8 + len);
    u32 *p = (u32 *)a1_p(v);
    p[0] = A1_STR;
    p[1] = len;
    return v;
}

a1v a1_str_from(const u8 *bytes, u32 len) {
    a1v v = a1_str_new(len);
    __builtin_memcpy(a1_p(v) + 8, bytes, len);
    return v;
}

/* Heap collections carry their capacity in the 8 bytes before the record:
 * [u32 cap][u32 0][header][items]. Collections below heap_start (policy
 * constants, host input) have none; they are copied before they grow. */
static u32 slot_of(u32 tag) { return tag == A1_OBJ ? 8 : 4; }

a1v a1_coll_alloc(u32 tag, u32 n, u32 cap) {
    u32 slot = slot_of(tag);
    if (cap < n) cap = n;
    if (slot == 4) cap = (cap + 1) & ~1u; /* keeps the record 8-aligned at both ends */
    u64 bytes = 16 + (u64)cap * slot;
    if (bytes > 0x7FFFFFF0ull) a1_fail(E_OOM);
    u32 p = a1_alloc((u32)bytes);
    u32 *w = (u32 *)a1_p(p);
    w[0] = cap;
    w[1] = 0;
    w[2] = tag;
    w[3] = n;
    return p + 8;
}

static u32 coll_cap(a1v v) {
    if (v >= heap_start_ && v < heap_top_) return ((u32 *)a1_p(v))[-2];
    return a1_n(v);
}

/* Returns v, or a copy of it, with room for at least need items. */
static a1v coll_reserve(a1v v, u32 need) {
    u32 cap = coll_cap(v);
    if (__builtin_expect(need <= cap, 1)) return v;
    u32 tag = a1_tag_of(v), slot = slot_of(tag), n = a1_n(v);
    u32 ncap = cap * 2;
    if (ncap < need) ncap = need;
    if (ncap < 4) ncap = 4;
    if (slot == 4) ncap = (ncap + 1) & ~1u;
    if ((u64)ncap * slot > 0x7FFFFFF0ull) a1_fail(E_OOM);
    if (v >= heap_start_ && v < heap_top_ && v + 8 + cap * slot == heap_top_) {
        a1_alloc((ncap - cap) * slot); /* last allocation: extend in place */
        ((u32 *)a1_p(v))[-2] = ncap;
        return v;
    }
    a1v w = a1_coll_alloc(tag, n, ncap);
    __builtin_memcpy(a1_items(w), a1_items(v), (usize)n * slot);
    return w;
}

A1_EXPORT("a1_arr_new") a1v a1_arr_new(u32 cap) { return a1_coll_alloc(A1_ARR, 0, cap); }
A1_EXPORT("a1_set_new") a1v a1_set_new(void) { return a1_coll_alloc(A1_SET, 0, 4); }
A1_EXPORT("a1_obj_new") a1v a1_obj_new(void) { return a1_coll_alloc(A1_OBJ, 0, 4); }

A1_EXPORT("a1_arr_push") a1v a1_arr_push(a1v arr, a1v v) {
    if (!arr || !v || a1_tag_of(arr) != A1_ARR) a1_fail(E_INTERNAL);
    u32 n = a1_n(arr);
    arr = coll_reserve(arr, n + 1);
    a1_items(arr)[n] = v;
    ((u32 *)a1_p(arr))[1] = n + 1;
    return arr;
}

/* Binary search over sorted items (stride 1 for sets, 2 for objects): the
 * index of key, or -(insertion point) - 1. */
static i32 bsearch_items(const a1v *items, u32 n, u32 stride, a1v key) {
    u32 lo = 0, hi = n;
    /* Builders mostly append in order: check the last item first. */
    if (n) {
        i32 c = a1_cmp(items[(n - 1) * stride], key);
        if (c < 0) return -(i32)n - 1;
        if (c == 0) return (i32)n - 1;
        hi = n - 1;
    }
    while (lo < hi) {
        u32 mid = (lo + hi) >> 1;
        i32 c = a1_cmp(items[mid * stride], key);
        if (c == 0) return (i32)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -(i32)lo - 1;
}

A1_EXPORT("a1_set_add") a1v a1_set_add(a1v set, a1v v) {
    if (!set || !v || a1_tag_of(set) != A1_SET) a1_fail(E_INTERNAL);
    u32 n = a1_n(set);
    i32 at = bsearch_items(a1_items(set), n, 1, v);
    if (at >= 0) return set;
    u32 pos = (u32)(-at - 1);
    set = coll_reserve(set, n + 1);
    a1v *it = a1_items(set);
    if (pos < n) __builtin_memmove(it + pos + 1, it + pos, (usize)(n - pos) * 4);
    it[pos] = v;
    ((u32 *)a1_p(set))[1] = n + 1;
    return set;
}

static a1v obj_insert(a1v obj, a1v k, a1v v, int overwrite) {
    if (!obj || !k || !v || a1_tag_of(obj) != A1_OBJ) a1_fail(E_INTERNAL);
    u32 n = a1_n(obj);
    i32 at = bsearch_items(a1_items(obj), n, 2, k);
    if (at >= 0) {
        a1v *slot = &a1_items(obj)[2 * at + 1];
        if (*slot == v || a1_eq(*slot, v)) return obj;
        if (!overwrite) a1_fail(E_CONFLICT);
        if (obj < heap_start_) { /* never write into constants or input */
            a1v w = a1_coll_alloc(A1_OBJ, n, n);
            __builtin_memcpy(a1_items(w), a1_items(obj), (usize)n * 8);
            obj = w;
        }
        a1_items(obj)[2 * at + 1] = v;
        return obj;
    }
    u32 pos = (u32)(-at - 1);
    obj = coll_reserve(obj, n + 1);
    a1v *it = a1_items(obj);
    if (pos < n) __builtin_memmove(it + 2 * pos + 2, it + 2 * pos, (usize)(n - pos) * 8);
    it[2 * pos] = k;
    it[2 * pos + 1] = v;
    ((u32 *)a1_p(obj))[1] = n + 1;
    return obj;
}

A1_EXPORT("a1_obj_put") a1v a1_obj_put(a1v obj, a1v k, a1v v) { return obj_insert(obj, k, v, 0); }

/* Like a1_obj_put, but a present key takes the new value (object.union). */
a1v a1_obj_set(a1v obj, a1v k, a1v v) { return obj_insert(obj, k, v, 1); }

/* ---- inspection ---------------------------------------------------------- */

A1_EXPORT("a1_tag") i32 a1_tag(a1v v) { return (i32)a1_tag0(v); }

A1_EXPORT("a1_truthy") i32 a1_truthy(a1v v) {
    return v && !(a1_tag_of(v) == A1_BOOL && a1_n(v) == 0);
}

A1_EXPORT("a1_len") i32 a1_len(a1v v) {
    u32 t = a1_tag0(v);
    return t >= A1_ARR ? (i32)a1_n(v) : -1;
}

A1_EXPORT("a1_key_at") a1v a1_key_at(a1v v, u32 i) {
    u32 t = a1_tag0(v);
    if (t < A1_ARR || i >= a1_n(v)) a1_fail(E_INTERNAL);
    if (t == A1_ARR) return a1_num((double)i);
    if (t == A1_SET) return a1_items(v)[i];
    return a1_items(v)[2 * i];
}

A1_EXPORT("a1_val_at") a1v a1_val_at(a1v v, u32 i) {
    u32 t = a1_tag0(v);
    if (t < A1_ARR || i >= a1_n(v)) a1_fail(E_INTERNAL);
    if (t == A1_OBJ) return a1_items(v)[2 * i + 1];
    return a1_items(v)[i];
}

A1_EXPORT("a1_num_of") double a1_num_of(a1v v) {
    a1_need(v, A1_NUM);
    return a1_f(v);
}

/* ---- the total order -------------------------------------------------------
 * null < boolean < number < string < array < set < object (regorus's). */

i32 a1_cmp_i64_f64(i64 i, double d) {
    if (d >= 9223372036854775808.0) return -1;
    if (d < -9223372036854775808.0) return 1;
    i64 t = (i64)d; /* d in [-2^63, 2^63): its integer part fits */
    if (i != t) return i < t ? -1 : 1;
    double fr = d - __builtin_trunc(d);
    return fr > 0 ? -1 : fr < 0;
}

/* Numbers by value: doubles directly, a flagged integer exactly. */
static i32 num_cmp(a1v a, a1v b) {
    int fa = a1_is_i64(a), fb = a1_is_i64(b);
    if (__builtin_expect(!(fa | fb), 1)) {
        double x = a1_f(a), y = a1_f(b);
        return x < y ? -1 : x > y;
    }
    if (fa && fb) {
        i64 x = a1_i(a), y = a1_i(b);
        return x < y ? -1 : x > y;
    }
    return fa ? a1_cmp_i64_f64(a1_i(a), a1_f(b)) : -a1_cmp_i64_f64(a1_i(b), a1_f(a));
}

static i32 str_cmp(a1v a, a1v b) {
    u32 na = a1_n(a), nb = a1_n(b);
    i32 c = memcmp(a1_s(a), a1_s(b), na < nb ? na : nb);
    if (c) return c;
    return na < nb ? -1 : na > nb;
}

A1_EXPORT("a1_cmp") i32 a1_cmp(a1v a, a1v b) {
    if (a == b) return 0;
    if (__builtin_expect(!a || !b, 0)) a1_fail(E_INTERNAL);
    u32 ta = a1_tag_of(a), tb = a1_tag_of(b);
    if (ta != tb) return ta < tb ? -1 : 1;
    switch (ta) {
    case A1_STR:
        return str_cmp(a, b);
    case A1_NUM:
        return num_cmp(a, b);
    case A1_BOOL: {
        u32 x = a1_n(a), y = a1_n(b);
        return x < y ? -1 : x > y;
    }
    case A1_ARR:
    case A1_SET: {
        u32 na = a1_n(a), nb = a1_n(b), m = na < nb ? na : nb;
        const a1v *x = a1_items(a), *y = a1_items(b);
        for (u32 i = 0; i < m; i++) {
            i32 c = a1_cmp(x[i], y[i]);
            if (c) return c;
        }
        return na < nb ? -1 : na > nb;
    }
    case A1_OBJ: {
        u32 na = a1_n(a), nb = a1_n(b), m = na < nb ? na : nb;
        const a1v *x = a1_items(a), *y = a1_items(b);
        for (u32 i = 0; i < 2 * m; i++) {
            i32 c = a1_cmp(x[i], y[i]);
            if (c) return c;
        }
        return na < nb ? -1 : na > nb;
    }
    case A1_NULL:
        return 0;
    default:
        a1_fail(E_INTERNAL);
    }
}

A1_EXPORT("a1_eq") i32 a1_eq(a1v a, a1v b) {
    if (a == b) return a != 0;
    if (!a || !b) return 0;
    u32 t = a1_tag_of(a);
    if (t != a1_tag_of(b)) return 0;
    switch (t) {
    case A1_STR: {
        u32 n = a1_n(a);
        return n == a1_n(b) && memcmp(a1_s(a), a1_s(b), n) == 0;
    }
    case A1_NUM:
        if (__builtin_expect(!(a1_is_i64(a) | a1_is_i64(b)), 1)) return a1_f(a) == a1_f(b);
        return num_cmp(a, b) == 0;
    case A1_BOOL:
        return a1_n(a) == a1_n(b);
    case A1_NULL:
        return 1;
    default: {
        u32 n = a1_n(a);
        if (n != a1_n(b)) return 0;
        if (t == A1_OBJ) n *= 2;
        const a1v *x = a1_items(a), *y = a1_items(b);
        for (u32 i = 0; i < n; i++)
            if (!a1_eq(x[i], y[i])) return 0;
        return 1;
    }
    }
}

A1_EXPORT("a1_cmp_op") i32 a1_cmp_op(i32 op, a1v a, a1v b) {
    i32 c = a1_cmp(a, b);
    switch (op) {
    case 0: return c < 0;
    case 1: return c <= 0;
    case 2: return c > 0;
    case 3: return c >= 0;
    default: a1_fail(E_INTERNAL);
    }
}

/* ---- lookup and membership ------------------------------------------------- */

/* Object lookup; string keys (the common case) skip the generic compare. */
static a1v obj_lookup(a1v obj, a1v key) {
    const a1v *it = a1_items(obj);
    u32 lo = 0, hi = a1_n(obj);
    if (a1_tag_of(key) == A1_STR) {
        const u8 *ks = a1_s(key);
        u32 kn = a1_n(key);
        while (lo < hi) {
            u32 mid = (lo + hi) >> 1;
            a1v e = it[2 * mid];
            u32 et = a1_tag_of(e);
            i32 c;
            if (et != A1_STR) {
                c = et < A1_STR ? -1 : 1;
            } else {
                u32 en = a1_n(e);
                c = memcmp(a1_s(e), ks, en < kn ? en : kn);
                if (!c) c = en < kn ? -1 : en > kn;
            }
            if (c == 0) return it[2 * mid + 1];
            if (c < 0) lo = mid + 1;
            else hi = mid;
        }
        return 0;
    }
    while (lo < hi) {
        u32 mid = (lo + hi) >> 1;
        i32 c = a1_cmp(it[2 * mid], key);
        if (c == 0) return it[2 * mid + 1];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static i32 set_find(a1v set, a1v key) {
    const a1v *it = a1_items(set);
    u32 lo = 0, hi = a1_n(set);
    while (lo < hi) {
        u32 mid = (lo + hi) >> 1;
        i32 c = a1_cmp(it[mid], key);
        if (c == 0) return (i32)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* Index of an integral in-range number key into n items, else -1. */
static i32 arr_index(a1v key, u32 n) {
    if (a1_tag_of(key) != A1_NUM || a1_is_i64(key)) return -1; /* flagged: beyond 2^53 */
    double d = a1_f(key);
    if (!(d >= 0 && d < (double)n)) return -1;
    u32 i = (u32)d;
    return (double)i == d ? (i32)i : -1;
}

A1_EXPORT("a1_get") a1v a1_get(a1v coll, a1v key) {
    if (!coll || !key) return 0;
    switch (a1_tag_of(coll)) {
    case A1_OBJ:
        return obj_lookup(coll, key);
    case A1_ARR: {
        i32 i = arr_index(key, a1_n(coll));
        return i < 0 ? 0 : a1_items(coll)[i];
    }
    case A1_SET: {
        i32 i = set_find(coll, key);
        return i < 0 ? 0 : a1_items(coll)[i];
    }
    default:
        return 0;
    }
}

A1_EXPORT("a1_in") i32 a1_in(a1v v, a1v coll) {
    if (!v || !coll) return 0;
    u32 t = a1_tag_of(coll);
    if (t == A1_SET) return set_find(coll, v) >= 0;
    if (t == A1_ARR || t == A1_OBJ) {
        u32 n = a1_n(coll), step = t == A1_OBJ ? 2 : 1;
        const a1v *it = a1_items(coll) + (step - 1);
        for (u32 i = 0; i < n; i++)
            if (a1_eq(it[i * step], v)) return 1;
    }
    return 0;
}

A1_EXPORT("a1_in2") i32 a1_in2(a1v k, a1v v, a1v coll) {
    if (!k || !v || !coll) return 0;
    switch (a1_tag_of(coll)) {
    case A1_OBJ: {
        a1v x = obj_lookup(coll, k);
        return x && a1_eq(x, v);
    }
    case A1_ARR: {
        i32 i = arr_index(k, a1_n(coll));
        return i >= 0 && a1_eq(a1_items(coll)[i], v);
    }
    default: /* sets too: `k, v in s` is false for a set in OPA and regorus */
        return 0;
    }
}

/* ---- arithmetic and set operators --------------------------------------------- */

/* Number results: finite only (regorus has exact big numbers where an f64
 * would overflow: refuse rather than diverge), and no negative zero. */
static a1v num_result(double r) {
    if (!(r - r == 0)) a1_fail(E_RANGE);
    if (r == 0) r = 0;
    return a1_num(r);
}

a1v a1_n_out(a1n x) { return x.exact ? a1_int(x.i) : num_result(x.d); }

/* x * y when it fits int64 (returns 0 otherwise), in 32-bit halves: LLVM
 * turns the usual division check into a 128-bit multiply, a libcall here. */
static int mul_i64(i64 x, i64 y, i64 *r) {
    u64 ux = x < 0 ? 0 - (u64)x : (u64)x, uy = y < 0 ? 0 - (u64)y : (u64)y;
    int neg = (x < 0) != (y < 0);
    u64 xl = ux & 0xFFFFFFFFu, xh = ux >> 32, yl = uy & 0xFFFFFFFFu, yh = uy >> 32;
    if (xh && yh) return 0;
    u64 mid = xh * yl + yh * xl, lo = xl * yl; /* one of the two terms is 0 */
    if (mid >> 32) return 0;
    u64 p = (mid << 32) + lo;
    if (p < lo) return 0;
    if (p > 0x7FFFFFFFFFFFFFFFull + (u64)neg) return 0;
    *r = neg ? (i64)(0 - p) : (i64)p;
    return 1;
}

a1n a1_n_arith(int op, a1n a, a1n b) {
    if (a.exact && b.exact) {
        a1n r = {1, 0, 0};
        int ok = op == '+'   ? !__builtin_add_overflow(a.i, b.i, &r.i)
                 : op == '-' ? !__builtin_sub_overflow(a.i, b.i, &r.i)
                             : mul_i64(a.i, b.i, &r.i);
        if (!ok) a1_fail(E_RANGE); /* past int64: never a rounded double */
        return r;
    }
    double x = a1_n_f(a), y = a1_n_f(b);
    return a1_n_dbl(op == '+' ? x + y : op == '-' ? x - y : x * y);
}

static void need_nums(a1v a, a1v b) {
    if (!a || !b || a1_tag_of(a) != A1_NUM || a1_tag_of(b) != A1_NUM) a1_fail(E_TYPE);
}

static void need_sets(a1v a, a1v b) {
    if (!a || !b || a1_tag_of(a) != A1_SET || a1_tag_of(b) != A1_SET) a1_fail(E_TYPE);
}

A1_EXPORT("a1_add") a1v a1_add(a1v a, a1v b) {
    need_nums(a, b);
    return a1_n_out(a1_n_arith('+', a1_n_of(a), a1_n_of(b)));
}

A1_EXPORT("a1_mul") a1v a1_mul(a1v a, a1v b) {
    need_nums(a, b);
    return a1_n_out(a1_n_arith('*', a1_n_of(a), a1_n_of(b)));
}

/* Integers: exact when the divisor divides, else the correctly rounded
 * double (regorus: an integer when it divides, else a float). */
A1_EXPORT("a1_div") a1v a1_div(a1v a, a1v b) {
    need_nums(a, b);
    a1n x = a1_n_of(a), y = a1_n_of(b);
    if (x.exact && y.exact) {
        if (y.i == 0) a1_fail(E_DIV0);
        if (y.i == -1) return a1_n_out(a1_n_arith('-', a1_n_dbl(0), x));
        if (x.i % y.i == 0) return a1_int(x.i / y.i);
        double q = x.i >= -(i64)A1_TWO53 && x.i <= (i64)A1_TWO53 && y.i >= -(i64)A1_TWO53 &&
                           y.i <= (i64)A1_TWO53
                       ? (double)x.i / (double)y.i /* exact operands: one rounding */
                       : a1_int_ratio(x.i, y.i);
        return num_result(q);
    }
    if (a1_n_f(y) == 0) a1_fail(E_DIV0);
    return num_result(a1_n_f(x) / a1_n_f(y));
}

A1_EXPORT("a1_rem") a1v a1_rem(a1v a, a1v b) {
    need_nums(a, b);
    a1n x = a1_n_of(a), y = a1_n_of(b);
    if (x.exact && y.exact) {
        if (y.i == 0) a1_fail(E_DIV0);
        return a1_int(y.i == -1 ? 0 : x.i % y.i);
    }
    double dx = a1_n_f(x), dy = a1_n_f(y);
    if (dy == 0) a1_fail(E_DIV0);
    if (!a1_is_int(dx) || !a1_is_int(dy)) a1_fail(E_RANGE);
    return num_result(a1_int_rem(dx, dy));
}

A1_EXPORT("a1_neg") a1v a1_neg(a1v a) {
    a1_need(a, A1_NUM);
    return a1_n_out(a1_n_arith('-', a1_n_dbl(0), a1_n_of(a)));
}

/* Sorted-merge set operations. mode 0: a | b, 1: a & b, 2: a - b. */
static a1v set_merge(a1v a, a1v b, int mode) {
    u32 na = a1_n(a), nb = a1_n(b), i = 0, j = 0, k = 0;
    const a1v *x = a1_items(a), *y = a1_items(b);
    a1v r = a1_coll_alloc(A1_SET, 0, mode == 0 ? na + nb : na);
    a1v *out = a1_items(r);
    while (i < na && j < nb) {
        i32 c = a1_cmp(x[i], y[j]);
        if (c < 0) {
            if (mode != 1) out[k++] = x[i];
            i++;
        } else if (c > 0) {
            if (mode == 0) out[k++] = y[j];
            j++;
        } else {
            if (mode != 2) out[k++] = x[i];
            i++;
            j++;
        }
    }
    if (mode != 1)
        while (i < na) out[k++] = x[i++];
    if (mode == 0)
        while (j < nb) out[k++] = y[j++];
    ((u32 *)a1_p(r))[1] = k;
    return r;
}

a1v a1_set_union(a1v a, a1v b) { return set_merge(a, b, 0); }
a1v a1_set_inter(a1v a, a1v b) { return set_merge(a, b, 1); }

A1_EXPORT("a1_sub") a1v a1_sub(a1v a, a1v b) {
    if (a && b && a1_tag_of(a) == A1_SET && a1_tag_of(b) == A1_SET) return set_merge(a, b, 2);
    if (a && b && (a1_tag_of(a) == A1_SET || a1_tag_of(b) == A1_SET)) a1_fail(E_TYPE);
    need_nums(a, b);
    return a1_n_out(a1_n_arith('-', a1_n_of(a), a1_n_of(b)));
}

A1_EXPORT("a1_or") a1v a1_or(a1v a, a1v b) {
    need_sets(a, b);
    return set_merge(a, b, 0);
}

A1_EXPORT("a1_and") a1v a1_and(a1v a, a1v b) {
    need_sets(a, b);
    return set_merge(a, b, 1);
}

/* ---- string builder at the heap top ---------------------------------------- */

static u32 sb_rec_;

void a1_sb_begin(void) {
    sb_rec_ = a1_alloc(8);
    ((u32 *)a1_p(sb_rec_))[0] = A1_STR;
}

void a1_sb_put(const u8 *b, u32 n) {
    u64 e = (u64)heap_top_ + n;
    if (e + 8 > heap_end_) {
        if (e + 8 > 0xFFFFFFF0ull) a1_fail(E_OOM);
        grow_to(e + 8);
    }
    __builtin_memcpy(a1_p(heap_top_), b, n);
    heap_top_ = (u32)e;
}

void a1_sb_putc(u8 c) {
    if (__builtin_expect((u64)heap_top_ + 9 > heap_end_, 0)) grow_to((u64)heap_top_ + 9);
    *a1_p(heap_top_) = c;
    heap_top_ += 1;
}

a1v a1_sb_end(void) {
    a1v v = sb_rec_;
    ((u32 *)a1_p(v))[1] = heap_top_ - (v + 8);
    heap_top_ = a1_align8(heap_top_);
    return v;
}
