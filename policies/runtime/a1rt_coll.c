/* Collection, aggregate, object and type builtins, matching regorus. */
#include "a1rt.h"

a1v a1_obj_set(a1v obj, a1v k, a1v v);
a1v a1_set_union(a1v a, a1v b);
a1v a1_set_inter(a1v a, a1v b);

static int is_arr_or_set(a1v v) {
    u32 t = a1_tag0(v);
    return t == A1_ARR || t == A1_SET;
}

/* ---- aggregates ---------------------------------------------------------- */

A1_EXPORT("a1_b_count") a1v a1_b_count(a1v v) {
    u32 t = a1_tag0(v);
    if (t == A1_STR) {
        /* regorus counts UTF-16 code units (a code point above U+FFFF counts
         * twice; OPA would count it once): lead bytes, plus one per 4-byte lead */
        const u8 *p = a1_s(v);
        u32 n = a1_n(v), c = 0;
        for (u32 i = 0; i < n; i++) c += ((p[i] & 0xC0) != 0x80) + (p[i] >= 0xF0);
        return a1_num((double)c);
    }
    if (t < A1_ARR) a1_fail(E_TYPE);
    return a1_num((double)a1_n(v));
}

static a1v fold(a1v coll, int product) {
    if (!is_arr_or_set(coll)) a1_fail(E_TYPE);
    /* in order, as regorus folds: exact over integers, E_RANGE past int64 */
    a1n acc = a1_n_dbl(product ? 1 : 0);
    for (u32 i = 0; i < a1_n(coll); i++) {
        a1v x = a1_items(coll)[i];
        a1_need(x, A1_NUM);
        acc = a1_n_arith(product ? '*' : '+', acc, a1_n_of(x));
    }
    return a1_n_out(acc);
}

A1_EXPORT("a1_b_sum") a1v a1_b_sum(a1v coll) { return fold(coll, 0); }
A1_EXPORT("a1_b_product") a1v a1_b_product(a1v coll) { return fold(coll, 1); }

static a1v extreme(a1v coll, int want) {
    if (!is_arr_or_set(coll)) a1_fail(E_TYPE);
    u32 n = a1_n(coll);
    if (!n) return 0; /* undefined, like regorus */
    const a1v *it = a1_items(coll);
    if (a1_tag_of(coll) == A1_SET) return want > 0 ? it[n - 1] : it[0];
    a1v best = it[0];
    for (u32 i = 1; i < n; i++)
        if (a1_cmp(it[i], best) == want) best = it[i];
    return best;
}

A1_EXPORT("a1_b_max") a1v a1_b_max(a1v coll) { return extreme(coll, 1); }
A1_EXPORT("a1_b_min") a1v a1_b_min(a1v coll) { return extreme(coll, -1); }

/* Stable merge sort of n values by the total order. */
static void merge_sort(a1v *a, a1v *tmp, u32 n) {
    if (n < 2) return;
    if (n <= 8) {
        for (u32 i = 1; i < n; i++) {
            a1v x = a[i];
            u32 j = i;
            while (j > 0 && a1_cmp(a[j - 1], x) > 0) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = x;
        }
        return;
    }
    u32 h = n / 2;
    merge_sort(a, tmp, h);
    merge_sort(a + h, tmp, n - h);
    if (a1_cmp(a[h - 1], a[h]) <= 0) return;
    __builtin_memcpy(tmp, a, h * 4);
    u32 i = 0, j = h, k = 0;
    while (i < h && j < n) a[k++] = a1_cmp(a[j], tmp[i]) < 0 ? a[j++] : tmp[i++];
    while (i < h) a[k++] = tmp[i++];
}

A1_EXPORT("a1_b_sort") a1v a1_b_sort(a1v coll) {
    if (!is_arr_or_set(coll)) a1_fail(E_TYPE);
    u32 n = a1_n(coll);
    a1v r = a1_coll_alloc(A1_ARR, n, n);
    __builtin_memcpy(a1_items(r), a1_items(coll), n * 4);
    if (a1_tag_of(coll) == A1_ARR && n > 1) {
        a1v *tmp = (a1v *)a1_p(a1_alloc((n / 2) * 4)); /* merge buffer: half */
        merge_sort(a1_items(r), tmp, n);
    }
    return r;
}

/* ---- arrays ---------------------------------------------------------------- */

A1_EXPORT("a1_b_array_concat") a1v a1_b_array_concat(a1v a, a1v b) {
    a1_need(a, A1_ARR);
    a1_need(b, A1_ARR);
    u32 na = a1_n(a), nb = a1_n(b);
    if (!nb) return a;
    if (!na) return b;
    a1v r = a1_coll_alloc(A1_ARR, na + nb, na + nb);
    __builtin_memcpy(a1_items(r), a1_items(a), na * 4);
    __builtin_memcpy(a1_items(r) + na, a1_items(b), nb * 4);
    return r;
}

A1_EXPORT("a1_b_array_reverse") a1v a1_b_array_reverse(a1v a) {
    a1_need(a, A1_ARR);
    u32 n = a1_n(a);
    a1v r = a1_coll_alloc(A1_ARR, n, n);
    for (u32 i = 0; i < n; i++) a1_items(r)[i] = a1_items(a)[n - 1 - i];
    return r;
}

A1_EXPORT("a1_b_array_slice") a1v a1_b_array_slice(a1v a, a1v start, a1v stop) {
    a1_need(a, A1_ARR);
    a1_need(start, A1_NUM);
    a1_need(stop, A1_NUM);
    double s = a1_f(start), e = a1_f(stop);
    if (!a1_is_int(s) || !a1_is_int(e)) return 0;
    u32 n = a1_n(a);
    if (s < 0) s = 0;
    if (e > n) e = n;
    if (s >= e) return a1_coll_alloc(A1_ARR, 0, 0);
    u32 from = (u32)s, to = (u32)e;
    if (from == 0 && to == n) return a;
    a1v r = a1_coll_alloc(A1_ARR, to - from, to - from);
    __builtin_memcpy(a1_items(r), a1_items(a) + from, (to - from) * 4);
    return r;
}

/* ---- objects ------------------------------------------------------------------ */

A1_EXPORT("a1_b_object_get") a1v a1_b_object_get(a1v obj, a1v key, a1v dflt) {
    a1_need(obj, A1_OBJ);
    if (!key || !dflt) a1_fail(E_INTERNAL);
    if (a1_tag_of(key) == A1_ARR) { /* a path */
        a1v v = obj;
        for (u32 i = 0; i < a1_n(key); i++) {
            v = a1_get(v, a1_items(key)[i]);
            if (!v) return dflt;
        }
        return v;
    }
    a1v v = a1_get(obj, key);
    return v ? v : dflt;
}

A1_EXPORT("a1_b_object_keys") a1v a1_b_object_keys(a1v obj) {
    a1_need(obj, A1_OBJ);
    u32 n = a1_n(obj);
    a1v r = a1_coll_alloc(A1_SET, n, n);
    for (u32 i = 0; i < n; i++) a1_items(r)[i] = a1_items(obj)[2 * i];
    return r;
}

/* Keys named by an array, set or object (its keys). */
static int key_named(a1v keys, a1v k) {
    switch (a1_tag_of(keys)) {
    case A1_SET:
        return a1_get(keys, k) != 0;
    case A1_OBJ:
        return a1_get(keys, k) != 0;
    default: {
        for (u32 i = 0; i < a1_n(keys); i++)
            if (a1_eq(a1_items(keys)[i], k)) return 1;
        return 0;
    }
    }
}

A1_EXPORT("a1_b_object_remove") a1v a1_b_object_remove(a1v obj, a1v keys) {
    a1_need(obj, A1_OBJ);
    u32 t = a1_tag0(keys);
    if (t != A1_ARR && t != A1_SET && t != A1_OBJ) a1_fail(E_TYPE);
    u32 n = a1_n(obj), k = 0;
    a1v r = a1_coll_alloc(A1_OBJ, 0, n);
    for (u32 i = 0; i < n; i++) {
        a1v key = a1_items(obj)[2 * i];
        if (!key_named(keys, key)) {
            a1_items(r)[2 * k] = key;
            a1_items(r)[2 * k + 1] = a1_items(obj)[2 * i + 1];
            k++;
        }
    }
    ((u32 *)a1_p(r))[1] = k;
    return r;
}

/* Recursive merge: b wins, except that two objects merge. */
static a1v union2(a1v a, a1v b) {
    if (a1_tag_of(a) != A1_OBJ || a1_tag_of(b) != A1_OBJ) return b;
    u32 na = a1_n(a), nb = a1_n(b);
    if (!nb) return a;
    a1v r = a1_coll_alloc(A1_OBJ, na, na + nb);
    __builtin_memcpy(a1_items(r), a1_items(a), na * 8);
    for (u32 i = 0; i < nb; i++) {
        a1v k = a1_items(b)[2 * i], v = a1_items(b)[2 * i + 1];
        a1v old = a1_get(a, k);
        r = a1_obj_set(r, k, old ? union2(old, v) : v);
    }
    return r;
}

A1_EXPORT("a1_b_object_union") a1v a1_b_object_union(a1v a, a1v b) {
    a1_need(a, A1_OBJ);
    a1_need(b, A1_OBJ);
    return union2(a, b);
}

/* ---- sets of sets ------------------------------------------------------------- */

static void need_set_of_sets(a1v s) {
    a1_need(s, A1_SET);
    for (u32 i = 0; i < a1_n(s); i++) a1_need(a1_items(s)[i], A1_SET);
}

A1_EXPORT("a1_b_union") a1v a1_b_union(a1v s) {
    need_set_of_sets(s);
    a1v r = a1_set_new();
    for (u32 i = 0; i < a1_n(s); i++) r = a1_set_union(r, a1_items(s)[i]);
    return r;
}

A1_EXPORT("a1_b_intersection") a1v a1_b_intersection(a1v s) {
    need_set_of_sets(s);
    u32 n = a1_n(s);
    if (!n) return a1_set_new();
    a1v r = a1_items(s)[0];
    for (u32 i = 1; i < n; i++) r = a1_set_inter(r, a1_items(s)[i]);
    return r;
}

/* ---- types ---------------------------------------------------------------------- */

A1_EXPORT("a1_b_is_null") a1v a1_b_is_null(a1v v) { return a1_bool(a1_tag0(v) == A1_NULL); }
A1_EXPORT("a1_b_is_boolean") a1v a1_b_is_boolean(a1v v) { return a1_bool(a1_tag0(v) == A1_BOOL); }
A1_EXPORT("a1_b_is_number") a1v a1_b_is_number(a1v v) { return a1_bool(a1_tag0(v) == A1_NUM); }
A1_EXPORT("a1_b_is_string") a1v a1_b_is_string(a1v v) { return a1_bool(a1_tag0(v) == A1_STR); }
A1_EXPORT("a1_b_is_array") a1v a1_b_is_array(a1v v) { return a1_bool(a1_tag0(v) == A1_ARR); }
A1_EXPORT("a1_b_is_set") a1v a1_b_is_set(a1v v) { return a1_bool(a1_tag0(v) == A1_SET); }
A1_EXPORT("a1_b_is_object") a1v a1_b_is_object(a1v v) { return a1_bool(a1_tag0(v) == A1_OBJ); }

typedef struct {
    u32 tag, n;
    char s[8];
} name_rec;

static const name_rec k_type_names[8] __attribute__((aligned(8))) = {
    {0, 0, ""}, /* undefined: never returned */
    {A1_STR, 4, "null"},
    {A1_STR, 7, "boolean"},
    {A1_STR, 6, "number"},
    {A1_STR, 6, "string"},
    {A1_STR, 5, "array"},
    {A1_STR, 3, "set"},
    {A1_STR, 6, "object"},
};

A1_EXPORT("a1_b_type_name") a1v a1_b_type_name(a1v v) {
    u32 t = a1_tag0(v);
    if (t < A1_NULL || t > A1_OBJ) a1_fail(E_INTERNAL);
    return (a1v)(usize)&k_type_names[t];
}
