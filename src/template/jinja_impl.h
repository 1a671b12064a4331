/*
 * jinja_impl.h: the private structures shared by the chat-template interpreter's files.
 *
 * Pipeline: jinja_lex.c turns the source into tokens (applying trim_blocks, lstrip_blocks
 * and the - / + whitespace markers to the text between tags), jinja_parse.c builds a tree
 * of nodes, jinja_eval.c walks it, jinja_value.c holds the value model (Python's str(),
 * repr(), ==, <, truthiness, json.dumps) and jinja_filters.c the filters, tests, global
 * functions and str/dict methods.
 *
 * Memory: everything a parse or a render creates lives in an arena (a list of chunks from
 * cellm_malloc) freed at once. Values are immutable once built, except namespace objects,
 * so sharing pointers is safe and nothing needs reference counts. The arena has a byte cap,
 * which together with the step and depth caps bounds any template's cost.
 */
#ifndef CELLM_TEMPLATE_JINJA_IMPL_H
#define CELLM_TEMPLATE_JINJA_IMPL_H

#include <stdint.h>

#include "base/alloc.h"
#include "base/error.h"
#include "template/jinja.h"

#define JINJA_MAX_OUTPUT ((size_t)64 << 20) /* rendered text */
#define JINJA_MAX_ARENA ((size_t)512 << 20) /* all values of one render */
#define JINJA_MAX_STEPS 20000000L           /* evaluated nodes per render */
#define JINJA_MAX_DEPTH 128                 /* parser nesting and macro calls */

/* ---- arena ---------------------------------------------------------------------------- */

struct cellm_jinja_chunk;
struct cellm_jinja_arena {
    struct cellm_jinja_chunk *head;
    size_t used, cap; /* bytes handed out so far; the limit */
    int oom;          /* set when cellm_malloc failed (as opposed to the cap) */
};
void *cellm_jinja_alloc(struct cellm_jinja_arena *a, size_t n); /* NULL when full or no mem */
void cellm_jinja_arena_free(struct cellm_jinja_arena *a);

/* ---- values --------------------------------------------------------------------------- */

enum cellm_jinja_kind {
    JV_UNDEF, /* jinja2's Undefined: "" when printed, falsy, iterates as empty */
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,   /* also tuples (flag JV_TUPLE) */
    JV_DICT,   /* ordered; keys compared with == */
    JV_NS,     /* namespace(): a dict whose attributes can be assigned */
    JV_LOOP,   /* the loop variable of a for */
    JV_FUNC,   /* a global function (range, namespace, ...) */
    JV_MACRO,  /* a {% macro %} */
    JV_METHOD, /* a bound str/dict method, e.g. s.startswith */
};
#define JV_TUPLE 1u
#define JV_HINT 2u /* JV_UNDEF: u.s holds why it is undefined, not a variable name */

struct cellm_jinja_list;
struct cellm_jinja_dict;
struct cellm_jinja_loop;
struct cellm_jinja_node;

struct cellm_jinja_value {
    uint8_t kind;
    uint8_t flags;
    uint16_t fn;  /* JV_FUNC: which global; JV_METHOD: which method */
    uint32_t len; /* JV_STR: bytes */
    union {
        int64_t i; /* JV_BOOL, JV_INT */
        double f;
        const char *s;
        struct cellm_jinja_list *list;
        struct cellm_jinja_dict *dict;
        struct cellm_jinja_loop *loop;
        const struct cellm_jinja_node *macro;
        struct cellm_jinja_value *self; /* JV_METHOD: the receiver */
    } u;
};
typedef struct cellm_jinja_value jval;

struct cellm_jinja_list {
    size_t n, cap;
    jval *v;
};
struct cellm_jinja_dict {
    size_t n, cap;
    jval *k, *v;
};
struct cellm_jinja_loop {
    const struct cellm_jinja_list *items;
    size_t index0;
};

/* Growable byte buffer with a size cap (the output and temporary strings). */
struct cellm_jinja_buf {
    char *p;
    size_t n, cap, max;
    int oom; /* 1: allocation failed; 2: max exceeded */
};
void cellm_jinja_buf_put(struct cellm_jinja_buf *b, const char *s, size_t n);
void cellm_jinja_buf_putc(struct cellm_jinja_buf *b, char c);
void cellm_jinja_buf_printf(struct cellm_jinja_buf *b, const char *fmt, ...) CELLM_PRINTF(2, 3);

/* ---- tokens and nodes ----------------------------------------------------------------- */

enum cellm_jinja_tok {
    TK_EOF,
    TK_TEXT,
    TK_VAR_BEGIN,
    TK_VAR_END,
    TK_BLOCK_BEGIN,
    TK_BLOCK_END,
    TK_NAME,
    TK_STRING,
    TK_INT,
    TK_FLOAT,
    TK_OP, /* s/len hold the operator text */
};
struct cellm_jinja_token {
    enum cellm_jinja_tok kind;
    int line, col;
    const char *s; /* TEXT, NAME, STRING (decoded), OP */
    size_t len;
    int64_t i;
    double f;
};

enum cellm_jinja_nk {
    /* expressions */
    NK_LIT,    /* lit */
    NK_NAME,   /* name */
    NK_LIST,   /* kids; flags JV_TUPLE for tuples */
    NK_DICT,   /* kids: key, value, key, value... */
    NK_ATTR,   /* a.name */
    NK_ITEM,   /* a[b] */
    NK_SLICE,  /* a[b:c:d], b/c/d may be NULL */
    NK_CALL,   /* a(kids; names) */
    NK_FILTER, /* a|name(kids; names); fn: filter id */
    NK_TEST,   /* a is [not] name(kids); fn: test id; op: negated */
    NK_NEG,    /* -a */
    NK_POS,    /* +a */
    NK_NOT,    /* not a */
    NK_AND,
    NK_OR,
    NK_BIN,  /* a op b, op: one of the JB_* */
    NK_COND, /* b if a else c */
    /* statements */
    NK_TEXT,   /* name holds the text */
    NK_OUT,    /* {{ a }} */
    NK_IF,     /* if a: kids (body) else b (a NK_BODY or NULL) */
    NK_FOR,    /* for targets(names) in a [if c]: kids else b */
    NK_SET,    /* set target(a) = b */
    NK_SETBLK, /* set name: kids */
    NK_MACRO,  /* macro name(names = defaults in kids2): kids */
    NK_BREAK,
    NK_CONTINUE,
    NK_BODY, /* statements in kids (also a {% generation %} block: its own scope) */
};
enum cellm_jinja_binop {
    JB_ADD,
    JB_SUB,
    JB_MUL,
    JB_DIV,
    JB_FLOORDIV,
    JB_MOD,
    JB_POW,
    JB_CONCAT,
    JB_EQ,
    JB_NE,
    JB_LT,
    JB_LE,
    JB_GT,
    JB_GE,
    JB_IN,
    JB_NOTIN,
};

struct cellm_jinja_node {
    uint8_t kind, op;
    uint16_t fn;
    int line, col;
    const char *name; /* NAME, ATTR, FILTER, TEST, TEXT, SETBLK, MACRO */
    size_t name_len;
    jval lit;
    struct cellm_jinja_node *a, *b, *c, *d;
    struct cellm_jinja_node **kids; /* arguments, items or statements */
    int nkids;
    const char **names;              /* keyword-argument names, parallel to the tail of kids (NULL
                                        entries are positional); for loop / macro parameter names */
    struct cellm_jinja_node **kids2; /* MACRO: defaults (NULL when none), parallel to names */
    int nnames;
};

struct cellm_jinja_tmpl {
    struct cellm_jinja_arena arena;
    struct cellm_jinja_node *root; /* NK_BODY */
};

/* jinja_lex.c: tokens into an arena array ending with TK_EOF. */
enum cellm_status cellm_jinja_lex(struct cellm_jinja_arena *a, const char *src, size_t len,
                                  struct cellm_jinja_token **toks, size_t *ntoks,
                                  struct cellm_error *err);

/* ---- render context --------------------------------------------------------------------- */

struct cellm_jinja_frame {
    struct cellm_jinja_frame *up;
    struct cellm_jinja_dict vars;
};

struct cellm_jinja_ctx {
    struct cellm_jinja_arena arena;
    struct cellm_error *err;
    long steps;
    int depth;
    int loop_ctl;                      /* 1 break, 2 continue pending */
    const struct cellm_jinja_node *at; /* node being evaluated, for messages */
};

/* Fails with a message prefixed by the position of node n (or ctx->at). */
enum cellm_status cellm_jinja_fail(struct cellm_jinja_ctx *c, const struct cellm_jinja_node *n,
                                   enum cellm_status st, const char *fmt, ...) CELLM_PRINTF(4, 5);

/* jinja_value.c */
/* CELLM_ERR_NOMEM after an allocation failure, CELLM_ERR_RANGE when the arena cap is hit. */
enum cellm_status cellm_jinja_nomem(struct cellm_jinja_ctx *c);
jval cellm_jinja_str(const char *s, size_t n);
jval cellm_jinja_int(int64_t i);
jval cellm_jinja_bool(int b);
jval cellm_jinja_none(void);
jval cellm_jinja_undef(void);
/* An Undefined that remembers why ("list object has no element 3") for later errors. */
jval cellm_jinja_undef_hint(struct cellm_jinja_ctx *c, const char *fmt, ...) CELLM_PRINTF(2, 3);
/* The error Jinja2 raises when an Undefined is used: "'x' is undefined" or the hint. */
enum cellm_status cellm_jinja_undef_error(struct cellm_jinja_ctx *c,
                                          const struct cellm_jinja_node *n, const jval *v);
const char *cellm_jinja_kind_name(const jval *v);
int cellm_jinja_truthy(const jval *v);
int cellm_jinja_equal(const jval *a, const jval *b);
/* Three-way Python ordering; fails (TypeError) when the kinds cannot be ordered. */
enum cellm_status cellm_jinja_compare(struct cellm_jinja_ctx *c, const jval *a, const jval *b,
                                      int *out);
/* Python str() and repr() appended to b. */
enum cellm_status cellm_jinja_to_str(struct cellm_jinja_ctx *c, const jval *v,
                                     struct cellm_jinja_buf *b);
enum cellm_status cellm_jinja_repr(struct cellm_jinja_ctx *c, const jval *v,
                                   struct cellm_jinja_buf *b);
/* str(v) as a value (strings are returned as they are). */
enum cellm_status cellm_jinja_stringify(struct cellm_jinja_ctx *c, const jval *v, jval *out);
/* Copies a buffer's contents into the arena as a string value; resets the buffer. */
enum cellm_status cellm_jinja_buf_take(struct cellm_jinja_ctx *c, struct cellm_jinja_buf *b,
                                       jval *out);
/* jinja_json.c: json.dumps(v, ensure_ascii, indent (<0: none), sort_keys). */
enum cellm_status cellm_jinja_json(struct cellm_jinja_ctx *c, const jval *v, int ensure_ascii,
                                   int indent, int sort_keys, struct cellm_jinja_buf *b);
enum cellm_status cellm_jinja_from_cjson(struct cellm_jinja_ctx *c, const cJSON *j, jval *out);
void cellm_jinja_python_float(double f, char *out, size_t cap);

jval *cellm_jinja_dict_get(const struct cellm_jinja_dict *d, const jval *key);
jval *cellm_jinja_dict_gets(const struct cellm_jinja_dict *d, const char *key, size_t n);
enum cellm_status cellm_jinja_dict_set(struct cellm_jinja_ctx *c, struct cellm_jinja_dict *d,
                                       const jval *key, const jval *val);
enum cellm_status cellm_jinja_list_push(struct cellm_jinja_ctx *c, struct cellm_jinja_list *l,
                                        const jval *v);
enum cellm_status cellm_jinja_new_list(struct cellm_jinja_ctx *c, jval *out);
enum cellm_status cellm_jinja_new_dict(struct cellm_jinja_ctx *c, int ns, jval *out);
/* Iterates like Python's iter(): list items, dict keys, string characters; undefined is
 * empty. */
enum cellm_status cellm_jinja_iter_list(struct cellm_jinja_ctx *c, const jval *v,
                                        struct cellm_jinja_list **out);
/* UTF-8 helpers */
size_t cellm_jinja_utf8_count(const char *s, size_t n);
uint32_t cellm_jinja_utf8_decode(const char *s, size_t n, size_t i, size_t *clen);
size_t cellm_jinja_utf8_next(const char *s, size_t n, size_t i); /* index after char at i */
int cellm_jinja_is_space(const char *s, size_t n, size_t i, size_t *clen);

/* jinja_filters.c: ids are looked up at parse time so that unknown names are refused
 * before rendering. Return -1 when unknown. */
int cellm_jinja_filter_id(const char *name, size_t n);
int cellm_jinja_test_id(const char *name, size_t n);
int cellm_jinja_global_id(const char *name, size_t n);
int cellm_jinja_method_id(const jval *self, const char *name, size_t n);
enum cellm_status cellm_jinja_apply_filter(struct cellm_jinja_ctx *c,
                                           const struct cellm_jinja_node *n, int id, jval *v,
                                           jval *args, const char **names, int nargs,
                                           struct cellm_jinja_frame *f);
enum cellm_status cellm_jinja_apply_test(struct cellm_jinja_ctx *c,
                                         const struct cellm_jinja_node *n, int id, const jval *v,
                                         jval *args, int nargs, int *out);
enum cellm_status cellm_jinja_call_global(struct cellm_jinja_ctx *c,
                                          const struct cellm_jinja_node *n, int id, jval *args,
                                          const char **names, int nargs, jval *out);
enum cellm_status cellm_jinja_call_method(struct cellm_jinja_ctx *c,
                                          const struct cellm_jinja_node *n, const jval *m,
                                          jval *args, const char **names, int nargs, jval *out);
/* attribute lookup as jinja2's getattr: obj.name (methods bound, dict keys, loop fields) */
/* A call argument: the one named `name`, else the pos-th positional one; NULL if absent. */
const jval *cellm_jinja_arg(jval *args, const char **names, int nargs, int pos, const char *name);
enum cellm_status cellm_jinja_getattr(struct cellm_jinja_ctx *c, const struct cellm_jinja_node *n,
                                      const jval *obj, const char *name, size_t len, jval *out);
/* obj[key] as jinja2's getitem (then attribute) */
enum cellm_status cellm_jinja_getitem(struct cellm_jinja_ctx *c, const struct cellm_jinja_node *n,
                                      const jval *obj, const jval *key, jval *out);

/* jinja_builtin.c: str helpers shared with the filters. strip: which 1 left, 2 right, 3
 * both; chars NULL or none for white space. case mode: 0 lower, 1 upper, 2 title,
 * 3 capitalize (ASCII letters). replace: count < 0 for all. */
jval cellm_jinja_strip(const jval *s, const jval *chars, int which);
enum cellm_status cellm_jinja_case(struct cellm_jinja_ctx *c, const jval *s, int mode, jval *out);
enum cellm_status cellm_jinja_replace(struct cellm_jinja_ctx *c, const jval *s, const jval *old,
                                      const jval *new, int64_t count, jval *out);

/* jinja_eval.c */
enum cellm_status cellm_jinja_eval(struct cellm_jinja_ctx *c, const struct cellm_jinja_node *n,
                                   struct cellm_jinja_frame *f, jval *out);
/* Calls a macro value with arguments. */
enum cellm_status cellm_jinja_call_macro(struct cellm_jinja_ctx *c,
                                         const struct cellm_jinja_node *call, const jval *m,
                                         jval *args, const char **names, int nargs,
                                         struct cellm_jinja_frame *f, jval *out);

#endif
