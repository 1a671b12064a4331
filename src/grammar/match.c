/*
 * match.c: the matcher: a pushdown recognizer over code points, run over bytes, with token
 * masks over the whole vocabulary.
 *
 * Stacks. A stack is a node (pos, parent): "match from element pos, then continue with
 * parent"; node 0 is the empty stack (the grammar is complete). Nodes are hash-consed, so
 * equal stacks are equal ids and a stack shares its tail with every stack it was pushed
 * from. A reference in tail position pushes nothing (its continuation is the parent), so
 * right recursion such as x* runs in constant depth. The matcher's position is a set of
 * "heads": stacks whose top is a character class, or the empty stack. Sets are interned too.
 *
 * States. A state is (set of heads, partial UTF-8 character). Tokens are bytes and may split
 * a character, so a state may hold the lead bytes seen so far; it lives only while some head
 * could still match a character that starts with them. States are interned and their byte
 * transitions are filled in lazily (a 256-entry table per state), which makes the matcher a
 * DFA built on demand: once a transition is known, following it is one load.
 *
 * Masks. A mask is one pass over the vocabulary trie (vocab.h) from the current state,
 * following transitions and skipping a subtree at its first dead byte; it is cached per
 * state (the hash of the stack set is the interning), so a state seen again, such as the
 * inside of a JSON string, costs a copy. Tables and masks are dropped together when they
 * pass a size limit; nodes and sets are small and kept.
 */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "grammar/grammar.h"
#include "grammar/vocab.h"

#define MAX_TABLES (1 << 16) /* transition tables dropped beyond this many */
#define MAX_CODES (1u << 22) /* cached continuation transitions dropped beyond this */
#define MAX_SETS (1u << 22)  /* a grammar needing more head sets fails */
#define MAX_MASKS 256        /* cached masks dropped beyond this many */
#define MAX_NODES (1u << 24) /* a grammar needing more stack nodes fails */
#define MAX_POOL (1u << 25)  /* heads over all sets: a grammar needing more fails */
/* Steps (stacks expanded, heads tried) one call may take. An ambiguous grammar such as
 * ("a"{0,4096}){0,4096} holds millions of parses at once; it fails with this limit
 * instead of taking minutes per token. */
#define MAX_STEPS (1 << 22)

struct node {
    uint32_t pos, parent;
};

/* A position: a set of heads, and maybe part of a UTF-8 character: acc holds its bits so
 * far, left the continuation bytes still due, need the sequence's length (which forbids
 * overlong forms). */
struct pos {
    uint32_t s, acc;
    uint8_t left, need;
};

/* Open addressing over ids, with the hash and equality of the owner's choosing. */
struct htab {
    uint32_t *slot; /* id + 1; 0 = empty */
    size_t cap, n;
};

struct cellm_matcher {
    const struct cellm_grammar *g;
    const struct cellm_grammar_vocab *v;
    struct node *nodes;
    uint32_t n_nodes, cap_nodes;
    uint32_t *mark, stamp; /* [cap_nodes] expansion marks */
    struct htab node_ht;
    uint32_t *pool; /* sets' heads, back to back */
    size_t n_pool, cap_pool;
    uint32_t *set_off, *set_len;
    uint32_t n_sets, cap_sets;
    struct htab set_ht;
    /* per set: [256] byte transitions (0 = not computed, 1 = dead, 2 = a lead byte that
     * some head can continue, else next set + 3), and the cached mask */
    int32_t **next;
    uint32_t **mask;
    int32_t *uni; /* 0 = not known, 1 = the heads tell non-ASCII characters apart, 2 = they
                   * refuse them all, else all lead to set uni - 3 */
    size_t cap_tabs;
    /* (set, code) -> the same encoding, for continuation bytes: code is the character, or
     * a partial one (high bit, need, left, bits so far) */
    uint64_t *ck;
    int32_t *cv;
    size_t c_cap, c_n;
    struct pos cur;
    uint32_t start;         /* the set the grammar starts in */
    uint64_t vhash;         /* v->hash when made: reused only for the same vocabulary */
    uint32_t *heads, *work; /* scratch */
    size_t cap_heads, cap_work, n_heads;
    struct pos *walk; /* [max_len + 1] positions along the trie path */
    int n_tables, n_masks;
    int64_t steps_left; /* steps left in this call (MAX_STEPS) */
    int failed;
    enum cellm_status fst;
    struct cellm_error err;
};

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need)
        c *= 2;
    void *n = cellm_realloc(*v, c * size);
    if (!n) return -1;
    *v = n;
    *cap = c;
    return 0;
}

static void fail(struct cellm_matcher *m, enum cellm_status st, const char *msg)
{
    if (!m->failed) cellm_errf(&m->err, st, "grammar: %s", msg);
    if (!m->failed) m->fst = st;
    m->failed = 1;
}

/* Takes n steps from this call's budget; fails the matcher when it runs out. */
static int charge(struct cellm_matcher *m, uint32_t n)
{
    if ((m->steps_left -= n) >= 0) return 0;
    fail(m, CELLM_ERR_RANGE,
         "the grammar is too ambiguous: matching one token took more than the step limit");
    return -1;
}

/* ---- hash tables ---- */

static uint64_t node_hash(const struct cellm_matcher *m, uint32_t id)
{
    return mix(((uint64_t)m->nodes[id].pos << 32) | m->nodes[id].parent);
}

static uint64_t set_hash(const uint32_t *h, size_t n)
{
    uint64_t x = n;
    for (size_t i = 0; i < n; i++)
        x = mix(x * 31 + h[i]);
    return x;
}

static int ht_rehash(struct cellm_matcher *m, struct htab *t, int kind)
{
    size_t cap = t->cap ? t->cap * 2 : 1024;
    uint32_t *s = cellm_calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slot[i]) continue;
        uint32_t id = t->slot[i] - 1;
        uint64_t h =
            kind == 0 ? node_hash(m, id) : set_hash(m->pool + m->set_off[id], m->set_len[id]);
        size_t j = h & (cap - 1);
        while (s[j])
            j = (j + 1) & (cap - 1);
        s[j] = id + 1;
    }
    cellm_free(t->slot);
    t->slot = s;
    t->cap = cap;
    return 0;
}

/* ---- nodes and sets ---- */

static uint32_t intern_node(struct cellm_matcher *m, uint32_t pos, uint32_t parent)
{
    if (m->failed) return 0;
    if ((m->node_ht.n + 1) * 2 > m->node_ht.cap && ht_rehash(m, &m->node_ht, 0)) {
        fail(m, CELLM_ERR_NOMEM, "out of memory");
        return 0;
    }
    uint64_t h = mix(((uint64_t)pos << 32) | parent);
    size_t j = h & (m->node_ht.cap - 1);
    for (; m->node_ht.slot[j]; j = (j + 1) & (m->node_ht.cap - 1)) {
        const struct node *n = &m->nodes[m->node_ht.slot[j] - 1];
        if (n->pos == pos && n->parent == parent) return m->node_ht.slot[j] - 1;
    }
    if (m->n_nodes >= MAX_NODES) {
        fail(m, CELLM_ERR_RANGE, "the grammar's stacks grew beyond the limit");
        return 0;
    }
    if (m->n_nodes + 1 > m->cap_nodes) {
        size_t cap = m->cap_nodes, cap2 = m->cap_nodes;
        if (grow((void **)&m->nodes, &cap, m->n_nodes + 1, sizeof *m->nodes) ||
            grow((void **)&m->mark, &cap2, m->n_nodes + 1, sizeof *m->mark)) {
            fail(m, CELLM_ERR_NOMEM, "out of memory");
            return 0;
        }
        memset(m->mark + m->cap_nodes, 0, (cap2 - m->cap_nodes) * sizeof *m->mark);
        m->cap_nodes = (uint32_t)cap;
    }
    m->nodes[m->n_nodes] = (struct node){pos, parent};
    m->node_ht.slot[j] = ++m->n_nodes;
    m->node_ht.n++;
    return m->n_nodes - 1;
}

/* The stack "match from pos, then parent", skipping an alternative's end. */
static uint32_t cont(struct cellm_matcher *m, uint32_t pos, uint32_t parent)
{
    return m->g->el[pos].type == GE_END ? parent : intern_node(m, pos, parent);
}

/* Adds the heads reachable from stack s (expanding references) to m->heads. */
static void expand(struct cellm_matcher *m, uint32_t s)
{
    size_t nw = 0;
    if (grow((void **)&m->work, &m->cap_work, 1, sizeof *m->work)) goto nomem;
    m->work[nw++] = s;
    while (nw && !m->failed) {
        uint32_t n = m->work[--nw];
        if (charge(m, 1)) return;
        if (m->mark[n] == m->stamp) continue;
        m->mark[n] = m->stamp;
        const struct gr_elem *e = n ? &m->g->el[m->nodes[n].pos] : NULL;
        if (!e || e->type == GE_CHAR) {
            if (grow((void **)&m->heads, &m->cap_heads, m->n_heads + 1, sizeof *m->heads))
                goto nomem;
            m->heads[m->n_heads++] = n;
            continue;
        }
        /* a reference: every alternative of the rule, continuing after the reference */
        uint32_t after = cont(m, m->nodes[n].pos + 1, m->nodes[n].parent);
        const struct gr_rule *r = &m->g->rules[e->a];
        for (uint32_t k = 0; k < r->n_alts && !m->failed; k++) {
            uint32_t c = cont(m, m->g->alts[r->first_alt + k], after);
            if (grow((void **)&m->work, &m->cap_work, nw + 1, sizeof *m->work)) goto nomem;
            m->work[nw++] = c;
        }
    }
    return;
nomem:
    fail(m, CELLM_ERR_NOMEM, "out of memory");
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Interns m->heads[0..n_heads) (sorted here) as a set; returns its id. */
static uint32_t intern_set(struct cellm_matcher *m)
{
    if (m->failed) return 0;
    qsort(m->heads, m->n_heads, sizeof *m->heads, cmp_u32);
    if ((m->set_ht.n + 1) * 2 > m->set_ht.cap && ht_rehash(m, &m->set_ht, 1)) goto nomem;
    if (m->n_sets >= MAX_SETS) {
        fail(m, CELLM_ERR_RANGE, "the grammar needed more automaton states than the limit");
        return 0;
    }
    if (m->n_pool + m->n_heads > MAX_POOL) {
        fail(m, CELLM_ERR_RANGE, "the grammar's automaton states grew beyond the limit");
        return 0;
    }
    uint64_t h = set_hash(m->heads, m->n_heads);
    size_t j = h & (m->set_ht.cap - 1);
    for (; m->set_ht.slot[j]; j = (j + 1) & (m->set_ht.cap - 1)) {
        uint32_t id = m->set_ht.slot[j] - 1;
        if (m->set_len[id] == m->n_heads &&
            !memcmp(m->pool + m->set_off[id], m->heads, m->n_heads * sizeof *m->heads))
            return id;
    }
    size_t cs = m->cap_sets, cs2 = m->cap_sets;
    if (grow((void **)&m->pool, &m->cap_pool, m->n_pool + m->n_heads, sizeof *m->pool) ||
        grow((void **)&m->set_off, &cs, m->n_sets + 1, sizeof *m->set_off) ||
        grow((void **)&m->set_len, &cs2, m->n_sets + 1, sizeof *m->set_len))
        goto nomem;
    m->cap_sets = (uint32_t)cs;
    memcpy(m->pool + m->n_pool, m->heads, m->n_heads * sizeof *m->heads);
    m->set_off[m->n_sets] = (uint32_t)m->n_pool;
    m->set_len[m->n_sets] = (uint32_t)m->n_heads;
    m->n_pool += m->n_heads;
    m->set_ht.slot[j] = ++m->n_sets;
    m->set_ht.n++;
    if (m->n_sets > m->cap_tabs) {
        size_t c = m->cap_tabs ? m->cap_tabs * 2 : 64;
        int32_t **nx = cellm_realloc(m->next, c * sizeof *nx);
        if (nx) m->next = nx;
        uint32_t **mk = nx ? cellm_realloc(m->mask, c * sizeof *mk) : NULL;
        if (mk) m->mask = mk;
        int32_t *un = mk ? cellm_realloc(m->uni, c * sizeof *un) : NULL;
        if (!un) goto nomem;
        m->uni = un;
        memset(m->uni + m->cap_tabs, 0, (c - m->cap_tabs) * sizeof *un);
        memset(m->next + m->cap_tabs, 0, (c - m->cap_tabs) * sizeof *nx);
        memset(m->mask + m->cap_tabs, 0, (c - m->cap_tabs) * sizeof *mk);
        m->cap_tabs = c;
    }
    return m->n_sets - 1;
nomem:
    fail(m, CELLM_ERR_NOMEM, "out of memory");
    return 0;
}

static int class_has(const struct cellm_grammar *g, const struct gr_elem *e, uint32_t cp)
{
    const uint32_t *r = g->ranges + 2 * (size_t)e->a;
    size_t lo = 0, hi = e->b;
    while (lo < hi) { /* ranges are sorted and disjoint */
        size_t mid = (lo + hi) / 2;
        if (cp < r[2 * mid])
            hi = mid;
        else if (cp > r[2 * mid + 1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static int class_meets(const struct cellm_grammar *g, const struct gr_elem *e, uint32_t lo,
                       uint32_t hi)
{
    const uint32_t *r = g->ranges + 2 * (size_t)e->a;
    for (uint32_t i = 0; i < e->b; i++)
        if (r[2 * i] <= hi && r[2 * i + 1] >= lo) return 1;
    return 0;
}

/* The set after code point cp from set s, or -1 when no head takes it. */
static int64_t advance(struct cellm_matcher *m, uint32_t s, uint32_t cp)
{
    m->n_heads = 0;
    if (++m->stamp == 0) { /* wrapped: clear the marks */
        memset(m->mark, 0, m->cap_nodes * sizeof *m->mark);
        m->stamp = 1;
    }
    uint32_t off = m->set_off[s], len = m->set_len[s];
    if (charge(m, len)) return -1;
    for (uint32_t i = 0; i < len && !m->failed; i++) {
        uint32_t h = m->pool[off + i];
        if (!h) continue;
        const struct node nd = m->nodes[h];
        if (class_has(m->g, &m->g->el[nd.pos], cp)) expand(m, cont(m, nd.pos + 1, nd.parent));
    }
    if (m->failed || !m->n_heads) return -1;
    return intern_set(m);
}

static int feasible(struct cellm_matcher *m, uint32_t s, uint32_t lo, uint32_t hi)
{
    uint32_t off = m->set_off[s], len = m->set_len[s];
    if (charge(m, len)) return 0;
    if (hi > 0x10FFFF) hi = 0x10FFFF;
    for (uint32_t i = 0; i < len; i++) {
        uint32_t h = m->pool[off + i];
        if (h && class_meets(m->g, &m->g->el[m->nodes[h].pos], lo, hi)) return 1;
    }
    return 0;
}

/* ---- transitions ---- */

static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};

/* Whether some head could take a code point in [lo, hi] (a partial character's span). */
static int can_start(struct cellm_matcher *m, uint32_t set, uint32_t lo, uint32_t hi)
{
    if (lo >= 0xD800 && hi <= 0xDFFF) return 0; /* surrogates are not characters */
    return feasible(m, set, lo, hi);
}

static int span_ok(struct cellm_matcher *m, uint32_t set, uint32_t acc, unsigned left,
                   unsigned need)
{
    uint32_t lo = acc << (6 * left), hi = lo | ((1u << (6 * left)) - 1);
    if (lo < min_cp[need]) lo = min_cp[need];
    return lo <= hi && lo <= 0x10FFFF && can_start(m, set, lo, hi);
}

/* The start of the run of code points around cp that every head of set s treats alike
 * (each head's class either holds them all or none): such code points share a transition,
 * so the cache is keyed by the run rather than by the code point, and a string's inside
 * costs one transition for all of Unicode beyond ASCII instead of one per character. */
static uint32_t run_start(struct cellm_matcher *m, uint32_t s, uint32_t cp)
{
    uint32_t best = 0, off = m->set_off[s], len = m->set_len[s];
    if (charge(m, len)) return 0;
    for (uint32_t i = 0; i < len; i++) {
        uint32_t h = m->pool[off + i];
        if (!h) continue;
        const struct gr_elem *e = &m->g->el[m->nodes[h].pos];
        const uint32_t *r = m->g->ranges + 2 * (size_t)e->a;
        size_t lo = 0, hi = e->b; /* the first range whose end is >= cp */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (r[2 * mid + 1] < cp)
                lo = mid + 1;
            else
                hi = mid;
        }
        uint32_t b = lo == e->b        ? r[2 * lo - 1] + 1 /* past the last range */
                     : r[2 * lo] <= cp ? r[2 * lo]         /* inside range lo */
                     : lo              ? r[2 * lo - 1] + 1
                                       : 0; /* in the gap before it */
        if (b > best) best = b;
    }
    return best;
}

static int32_t code_get(const struct cellm_matcher *m, uint64_t key)
{
    if (!m->c_cap) return 0;
    for (size_t j = mix(key) & (m->c_cap - 1); m->ck[j]; j = (j + 1) & (m->c_cap - 1))
        if (m->ck[j] == key) return m->cv[j];
    return 0;
}

static void code_put(struct cellm_matcher *m, uint64_t key, int32_t v)
{
    if ((m->c_n + 1) * 2 > m->c_cap) {
        size_t cap = m->c_cap ? m->c_cap * 2 : 4096;
        uint64_t *k = cellm_calloc(cap, sizeof *k);
        int32_t *val = cellm_malloc(cap * sizeof *val);
        if (!k || !val) {
            cellm_free(k);
            cellm_free(val);
            return; /* a cache that cannot grow is no error */
        }
        for (size_t i = 0; i < m->c_cap; i++) {
            if (!m->ck[i]) continue;
            size_t j = mix(m->ck[i]) & (cap - 1);
            while (k[j])
                j = (j + 1) & (cap - 1);
            k[j] = m->ck[i];
            val[j] = m->cv[i];
        }
        cellm_free(m->ck);
        cellm_free(m->cv);
        m->ck = k;
        m->cv = val;
        m->c_cap = cap;
    }
    size_t j = mix(key) & (m->c_cap - 1);
    while (m->ck[j] && m->ck[j] != key)
        j = (j + 1) & (m->c_cap - 1);
    if (!m->ck[j]) m->c_n++;
    m->ck[j] = key;
    m->cv[j] = v;
}

/* The transition of set s on a byte that starts a character; stored in s's table. */
static int32_t first_byte(struct cellm_matcher *m, uint32_t s, uint8_t b)
{
    int32_t v = 1;
    if (b < 0x80) {
        int64_t t = advance(m, s, b);
        if (t >= 0) v = (int32_t)t + 3;
    } else {
        unsigned need = b >= 0xC2 && b <= 0xDF   ? 1
                        : b >= 0xE0 && b <= 0xEF ? 2
                        : b >= 0xF0 && b <= 0xF4 ? 3
                                                 : 4;
        if (need < 4 && span_ok(m, s, b & (need == 1 ? 0x1F : need == 2 ? 0x0F : 0x07), need, need))
            v = 2;
    }
    if (m->failed) return 1;
    if (!m->next[s]) {
        if (!(m->next[s] = cellm_calloc(256, sizeof **m->next))) {
            fail(m, CELLM_ERR_NOMEM, "out of memory");
            return 1;
        }
        m->n_tables++;
    }
    m->next[s][b] = v;
    return v;
}

/* Whether every non-ASCII character takes set s to one place (the inside of a JSON string
 * does): then a continuation byte needs no cache lookup, only the UTF-8 checks. */
static int32_t uniform(struct cellm_matcher *m, uint32_t s)
{
    if (m->uni[s]) return m->uni[s];
    int32_t u = 1;
    if (run_start(m, s, 0x10FFFF) <= 0x80) {
        int64_t t = advance(m, s, 0x80);
        u = t >= 0 ? (int32_t)t + 3 : 2;
    }
    if (m->failed) return 1;
    m->uni[s] = u;
    return u;
}

/* One byte from p into q; 0 when no head can take it. */
static inline int step(struct cellm_matcher *m, const struct pos *p, uint8_t b, struct pos *q)
{
    int32_t v;
    uint32_t acc = 0;
    uint8_t left = 0, need = 0;
    if (!p->left) {
        const int32_t *t = m->next[p->s];
        v = t ? t[b] : 0;
        if (!v) v = first_byte(m, p->s, b);
        if (v == 2) {
            need = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1;
            acc = b & (need == 1 ? 0x1F : need == 2 ? 0x0F : 0x07);
            left = need;
        }
    } else {
        if ((b & 0xC0) != 0x80) return 0;
        acc = (p->acc << 6) | (b & 0x3Fu);
        left = (uint8_t)(p->left - 1);
        need = p->need;
        if (!left && (acc < min_cp[need] || acc > 0x10FFFF || (acc >= 0xD800 && acc <= 0xDFFF)))
            return 0;
        int32_t u = uniform(m, p->s);
        if (u >= 2) {
            if (u == 2) return 0;
            if (left) {
                uint32_t lo = acc << (6 * left), hi = lo | ((1u << (6 * left)) - 1);
                if (lo < min_cp[need]) lo = min_cp[need];
                if (lo > hi || lo > 0x10FFFF || (lo >= 0xD800 && hi <= 0xDFFF)) return 0;
                *q = (struct pos){p->s, acc, left, need};
            } else {
                *q = (struct pos){(uint32_t)(u - 3), 0, 0, 0};
            }
            return 1;
        }
        uint32_t code = left ? 0x80000000u | (uint32_t)need << 28 | (uint32_t)left << 24 | acc
                             : run_start(m, p->s, acc);
        if (m->failed) return 0;
        uint64_t key = ((uint64_t)p->s << 32 | code) + 1;
        v = code_get(m, key);
        if (!v) {
            if (left) {
                v = span_ok(m, p->s, acc, left, need) ? 2 : 1;
            } else {
                int64_t t = advance(m, p->s, acc);
                v = t >= 0 ? (int32_t)t + 3 : 1;
            }
            if (m->failed) return 0;
            code_put(m, key, v);
        }
    }
    if (v == 1) return 0;
    if (v == 2) {
        *q = (struct pos){p->s, acc, left, need};
    } else {
        *q = (struct pos){(uint32_t)(v - 3), 0, 0, 0};
    }
    return 1;
}

/* Drops transition tables, continuation transitions and masks when there are too many. */
static void trim(struct cellm_matcher *m)
{
    if (m->n_tables < MAX_TABLES && m->n_masks < MAX_MASKS && m->c_n < MAX_CODES) return;
    for (size_t i = 0; i < m->cap_tabs; i++) {
        cellm_free(m->next[i]);
        cellm_free(m->mask[i]);
        m->next[i] = NULL;
        m->mask[i] = NULL;
    }
    m->n_tables = m->n_masks = 0;
    if (m->ck) memset(m->ck, 0, m->c_cap * sizeof *m->ck);
    m->c_n = 0;
}

/* ---- the public matcher ---- */

void cellm_matcher_free(struct cellm_matcher *m)
{
    if (!m) return;
    struct cellm_grammar *g = (struct cellm_grammar *)m->g; /* its pool is mutable */
    if (!m->failed) {
        trim(m);
        pthread_mutex_lock(&g->mu);
        int kept = g->n_idle < GR_IDLE;
        if (kept) g->idle[g->n_idle++] = m;
        pthread_mutex_unlock(&g->mu);
        if (kept) return;
    }
    cellm_gr_matcher_destroy(m);
}

void cellm_gr_matcher_destroy(struct cellm_matcher *m)
{
    for (size_t i = 0; i < m->cap_tabs; i++) {
        cellm_free(m->next[i]);
        cellm_free(m->mask[i]);
    }
    cellm_free(m->next);
    cellm_free(m->mask);
    cellm_free(m->uni);
    cellm_free(m->ck);
    cellm_free(m->cv);
    cellm_free(m->nodes);
    cellm_free(m->mark);
    cellm_free(m->node_ht.slot);
    cellm_free(m->pool);
    cellm_free(m->set_off);
    cellm_free(m->set_len);
    cellm_free(m->set_ht.slot);
    cellm_free(m->heads);
    cellm_free(m->work);
    cellm_free(m->walk);
    cellm_free(m);
}

enum cellm_status cellm_matcher_new(const struct cellm_grammar *g,
                                    const struct cellm_grammar_vocab *v, struct cellm_matcher **out,
                                    struct cellm_error *err)
{
    *out = NULL;
    if (!g) return cellm_errf(err, CELLM_ERR_ARG, "cellm_matcher_new: no grammar");
    struct cellm_grammar *mg = (struct cellm_grammar *)g; /* its pool is mutable */
    struct cellm_matcher *m = NULL;
    pthread_mutex_lock(&mg->mu);
    for (int i = mg->n_idle - 1; i >= 0 && !m; i--)
        if (mg->idle[i]->v == v && (!v || mg->idle[i]->vhash == v->hash)) {
            m = mg->idle[i];
            mg->idle[i] = mg->idle[--mg->n_idle];
        }
    pthread_mutex_unlock(&mg->mu);
    if (m) { /* a finished generation's matcher: its caches hold for this grammar */
        m->cur = (struct pos){m->start, 0, 0, 0};
        *out = m;
        return CELLM_OK;
    }
    m = cellm_calloc(1, sizeof *m);
    if (!m) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    m->g = g;
    m->v = v;
    m->vhash = v ? v->hash : 0;
    if (v && !(m->walk = cellm_malloc(((size_t)v->max_len + 2) * sizeof *m->walk))) {
        cellm_gr_matcher_destroy(m);
        return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    }
    intern_node(m, UINT32_MAX, UINT32_MAX); /* node 0: the empty stack (never read) */
    m->stamp = 1;
    m->steps_left = MAX_STEPS;
    const struct gr_rule *r = &g->rules[g->root];
    for (uint32_t k = 0; k < r->n_alts && !m->failed; k++)
        expand(m, cont(m, g->alts[r->first_alt + k], 0));
    uint32_t set = intern_set(m);
    if (m->failed) {
        enum cellm_status st = cellm_errf(err, m->fst ? m->fst : CELLM_ERR_NOMEM, "%s", m->err.msg);
        cellm_gr_matcher_destroy(m);
        return st;
    }
    m->start = set;
    m->cur = (struct pos){set, 0, 0, 0};
    *out = m;
    return CELLM_OK;
}

static enum cellm_status failed(const struct cellm_matcher *m, struct cellm_error *err)
{
    return cellm_errf(err, m->fst ? m->fst : CELLM_ERR_NOMEM, "%s", m->err.msg);
}

enum cellm_status cellm_matcher_accept_bytes(struct cellm_matcher *m, const void *bytes, size_t n,
                                             struct cellm_error *err)
{
    if (m->failed) return failed(m, err);
    trim(m);
    m->steps_left = MAX_STEPS;
    const uint8_t *b = bytes;
    struct pos p = m->cur, q;
    for (size_t i = 0; i < n; i++) {
        int ok = step(m, &p, b[i], &q);
        if (m->failed) return failed(m, err);
        if (!ok)
            return cellm_errf(err, CELLM_ERR_ARG,
                              "grammar: byte %zu (0x%02x) of the %zu given is not allowed here", i,
                              b[i], n);
        p = q;
    }
    m->cur = p;
    return CELLM_OK;
}

enum cellm_status cellm_matcher_accept_token(struct cellm_matcher *m, int32_t id,
                                             struct cellm_error *err)
{
    const struct cellm_grammar_vocab *v = m->v;
    if (!v || id < 0 || id >= v->n_vocab || !v->len[id])
        return cellm_errf(err, CELLM_ERR_ARG, "grammar: token %d has no text to match", id);
    enum cellm_status st = cellm_matcher_accept_bytes(m, v->bytes + v->off[id], v->len[id], err);
    if (st == CELLM_ERR_ARG)
        return cellm_errf(err, st, "grammar: token %d is not allowed here", id);
    return st;
}

int cellm_matcher_can_end(const struct cellm_matcher *m)
{
    return !m->cur.left && m->set_len[m->cur.s] && m->pool[m->set_off[m->cur.s]] == 0;
}

int cellm_matcher_done(const struct cellm_matcher *m)
{
    return cellm_matcher_can_end(m) && m->set_len[m->cur.s] == 1;
}

enum cellm_status cellm_matcher_mask(struct cellm_matcher *m, uint32_t *mask,
                                     struct cellm_error *err)
{
    const struct cellm_grammar_vocab *v = m->v;
    if (!v) return cellm_errf(err, CELLM_ERR_ARG, "cellm_matcher_mask: no vocabulary");
    if (m->failed) return failed(m, err);
    trim(m);
    m->steps_left = MAX_STEPS;
    size_t words = ((size_t)v->n_vocab + 31) / 32;
    int cacheable = !m->cur.left;
    if (cacheable && m->mask[m->cur.s]) {
        memcpy(mask, m->mask[m->cur.s], words * sizeof *mask);
        return CELLM_OK;
    }
    memset(mask, 0, words * sizeof *mask);
    struct pos *w = m->walk;
    w[0] = m->cur;
    const uint8_t *nbyte = v->nbyte;
    const uint16_t *ndepth = v->ndepth;
    for (uint32_t i = 1; i < v->n_nodes;) {
        uint32_t d = ndepth[i];
        const struct pos *p = &w[d - 1];
        const int32_t *t = p->left ? NULL : m->next[p->s];
        int32_t fast = t ? t[nbyte[i]] : 0; /* the common case, without a call */
        if (fast >= 3) {
            w[d] = (struct pos){(uint32_t)(fast - 3), 0, 0, 0};
        } else if (fast == 1 || !step(m, p, nbyte[i], &w[d])) {
            if (m->failed) return failed(m, err);
            i = v->nend[i];
            continue;
        }
        for (uint32_t k = 0, nh = v->nhere[i]; k < nh; k++) {
            int32_t id = v->sorted[v->ntok[i] + k];
            mask[id >> 5] |= 1u << (id & 31);
        }
        i++;
    }
    if (m->failed) return failed(m, err);
    if (cacheable) {
        uint32_t *keep = cellm_malloc(words * sizeof *keep);
        if (keep) { /* a cache that cannot store is no error */
            memcpy(keep, mask, words * sizeof *mask);
            m->mask[m->cur.s] = keep;
            m->n_masks++;
        }
    }
    return CELLM_OK;
}
