/* a1rt_match: matching of compile-time patterns (regex.match, glob.match,
 * net.cidr_contains) against runtime strings.
 *
 * The automata and networks are built by policies/compiler/patterns/ and
 * laid out by the compiler in the policy's constant area; docs/patterns.md
 * documents their binary layout. This file only depends on <stdint.h>, so it
 * also builds on its own (tests/test_patterns.py does that).
 */
#ifndef A1RT_MATCH_H
#define A1RT_MATCH_H

#include <stdint.h>

/* Blob magics and versions (little-endian u32 at offset 0 and 4). */
#define A1_DFA_MAGIC 0x46443141u  /* "A1DF" */
#define A1_CIDR_MAGIC 0x49433141u /* "A1CI" */
#define A1_PATTERN_VERSION 1u

/* DFA blob header flags. */
#define A1_DFA_FULL 1u      /* full match (glob); otherwise unanchored search */
#define A1_DFA_BYTES 2u     /* symbols are bytes; otherwise UTF-8 decoded scalars */
#define A1_DFA_NUL_ERROR 4u /* a NUL byte in the subject is an error */

/* DFA state flags. */
#define A1_STATE_MATCH 1u /* entering the state decides "match" */
#define A1_STATE_EOI 2u   /* accept if the subject ends in the state */

/* Match the string value `s` against the DFA blob at `dfa`.
 * Returns 1 (match), 0 (no match) or -1 (error: `s` is undefined or not a
 * string, the subject is not valid UTF-8, holds a NUL where the blob forbids
 * it, or the blob is malformed). */
int32_t a1_dfa_match(uint32_t dfa, uint32_t s);

/* Whether the IP address or CIDR in the string value `s` lies inside the
 * network blob at `cidr`. Returns 1, 0, or -1 (error: `s` is not a string, or
 * not an address / CIDR as regorus parses them, or the blob is malformed).
 * An address of the other family is 0, not an error. */
int32_t a1_cidr_match(uint32_t cidr, uint32_t s);

#endif
