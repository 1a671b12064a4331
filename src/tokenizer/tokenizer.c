/*
 * tokenizer.c: loading tokenizer.json and the public encode/decode API.
 *
 * Encoding: the input is made valid UTF-8 (U+FFFD for invalid parts), added tokens that
 * match raw text are cut out, every other segment is normalized, then cut again by the
 * added tokens that match normalized text, pre-tokenized into pieces, and each piece goes
 * through BPE. With add_special the post-processor's template wraps the ids. Decoding looks
 * the ids up (added tokens first), drops special ones when asked, and runs the decoder.
 * Anything in tokenizer.json outside the implemented set is refused by its type name.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "template/jinja.h"
#include "tokenizer/tokenizer.h"

const char *cellm_tok_id_str(const struct cellm_tokenizer *tok, int32_t id, size_t *len)
{
    if (id < 0 || id >= tok->size) return NULL;
    const char *s;
    if (tok->added_of[id] >= 0) {
        s = tok->added[tok->added_of[id]].content;
        *len = tok->added[tok->added_of[id]].len;
        return s;
    }
    s = cellm_tok_bpe_piece(tok->bpe, id);
    if (s) *len = strlen(s);
    return s;
}

static int32_t token_id(const struct cellm_tokenizer *tok, const char *s)
{
    for (size_t i = 0; i < tok->nadded; i++)
        if (!strcmp(tok->added[i].content, s)) return tok->added[i].id;
    return cellm_tok_bpe_lookup(tok->bpe, s, strlen(s));
}

static enum cellm_status parse_post(struct cellm_tokenizer *tok, const cJSON *j,
                                    struct cellm_error *err)
{
    const char *type = NULL;
    CELLM_TRY(cellm_json_str(j, "type", tok->what, NULL, &type, err));
    if (!type)
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: post_processor has no \"type\"", tok->what);
    if (!strcmp(type, "ByteLevel")) return CELLM_OK; /* only moves offsets */
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cellm_json_get(j, "processors");
        if (!cJSON_IsArray(list))
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: Sequence post_processor has no list",
                              tok->what);
        for (const cJSON *k = list->child; k; k = k->next)
            CELLM_TRY(parse_post(tok, k, err));
        return CELLM_OK;
    }
    if (strcmp(type, "TemplateProcessing"))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: post_processor type \"%s\" is not supported by cellm", tok->what,
                          type);
    const cJSON *single = cellm_json_get(j, "single"),
                *specials = cellm_json_get(j, "special_tokens");
    if (!cJSON_IsArray(single))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: TemplateProcessing has no \"single\" list",
                          tok->what);
    /* the new template wraps whatever the previous ones produced (-1 = the text) */
    size_t cap = 0, n = 0;
    int32_t *v = NULL;
    for (const cJSON *it = single->child; it; it = it->next) {
        const cJSON *sp = cellm_json_get(it, "SpecialToken"), *seq = cellm_json_get(it, "Sequence");
        const int32_t *src;
        size_t cnt;
        int32_t one[64];
        if (seq) {
            if (tok->post) {
                src = tok->post;
                cnt = tok->npost;
            } else {
                one[0] = -1;
                src = one;
                cnt = 1;
            }
        } else {
            const char *name = NULL;
            const cJSON *def, *ids;
            if (!sp || cellm_json_str(sp, "id", tok->what, NULL, &name, err) || !name ||
                !(def = cellm_json_get(specials, name)) ||
                !cJSON_IsArray(ids = cellm_json_get(def, "ids")) || cJSON_GetArraySize(ids) > 64) {
                cellm_free(v);
                return cellm_errf(err, CELLM_ERR_FORMAT,
                                  "%s: TemplateProcessing item is neither a Sequence nor a "
                                  "SpecialToken listed in special_tokens",
                                  tok->what);
            }
            cnt = 0;
            for (const cJSON *x = ids->child; x; x = x->next) {
                if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 0x7FFFFFF0) {
                    cellm_free(v);
                    return cellm_errf(err, CELLM_ERR_FORMAT,
                                      "%s: special_tokens[\"%s\"].ids has a bad id", tok->what,
                                      name);
                }
                one[cnt++] = (int32_t)x->valuedouble;
            }
            src = one;
        }
        if (n + cnt > cap) {
            cap = 2 * (n + cnt) + 8;
            int32_t *nv = cellm_realloc(v, cap * sizeof *nv);
            if (!nv) {
                cellm_free(v);
                return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", tok->what);
            }
            v = nv;
        }
        memcpy(v + n, src, cnt * sizeof *v);
        n += cnt;
    }
    cellm_free(tok->post);
    tok->post = v;
    tok->npost = n;
    return CELLM_OK;
}

static enum cellm_status parse_added(struct cellm_tokenizer *tok, const cJSON *list,
                                     struct cellm_error *err)
{
    if (!list) return CELLM_OK;
    if (!cJSON_IsArray(list))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: added_tokens is not an array", tok->what);
    size_t n = (size_t)cJSON_GetArraySize(list);
    tok->added = cellm_calloc(n ? n : 1, sizeof *tok->added);
    if (!tok->added) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", tok->what);
    for (const cJSON *a = list->child; a; a = a->next) {
        struct cellm_tok_added *t = &tok->added[tok->nadded];
        const char *content = NULL;
        int64_t id;
        const char *w = tok->what;
        CELLM_TRY(cellm_json_str(a, "content", w, NULL, &content, err));
        CELLM_TRY(cellm_json_int(a, "id", w, -1, &id, err));
        if (!content || id < 0 || id > 0x7FFFFFF0)
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: added_tokens[%zu] needs a content and "
                              "a non-negative id",
                              w, tok->nadded);
        CELLM_TRY(cellm_json_bool(a, "special", w, 0, &t->special, err));
        CELLM_TRY(cellm_json_bool(a, "lstrip", w, 0, &t->lstrip, err));
        CELLM_TRY(cellm_json_bool(a, "rstrip", w, 0, &t->rstrip, err));
        CELLM_TRY(cellm_json_bool(a, "single_word", w, 0, &t->single_word, err));
        CELLM_TRY(cellm_json_bool(a, "normalized", w, !t->special, &t->normalized, err));
        t->id = (int32_t)id;
        t->len = strlen(content);
        if (!(t->content = cellm_strdup(content)))
            return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", w);
        tok->nadded++;
    }
    return CELLM_OK;
}

static enum cellm_status build_tries(struct cellm_tokenizer *tok, struct cellm_error *err)
{
    for (size_t i = 0; i < tok->nadded; i++) {
        struct cellm_tok_added *a = &tok->added[i];
        int ok;
        if (a->normalized && tok->norm) {
            char *s;
            size_t l;
            CELLM_TRY(cellm_tok_norm_apply(tok->norm, a->content, a->len, NULL, &s, &l, err));
            ok = cellm_tok_trie_add(&tok->norm_trie, s, l, (int32_t)i);
            cellm_free(s);
        } else {
            ok = cellm_tok_trie_add(a->normalized ? &tok->norm_trie : &tok->raw_trie, a->content,
                                    a->len, (int32_t)i);
        }
        if (!ok) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", tok->what);
    }
    return CELLM_OK;
}

/* eos_token of a config: a string or {"content": ...}. */
static void add_eos(struct cellm_tokenizer *tok, int32_t id)
{
    if (id < 0) return;
    for (int i = 0; i < tok->neos; i++)
        if (tok->eos[i] == id) return;
    int32_t *e = cellm_realloc(tok->eos, (size_t)(tok->neos + 1) * sizeof *e);
    if (e) {
        tok->eos = e;
        tok->eos[tok->neos++] = id;
    }
}

static void load_side_files(struct cellm_tokenizer *tok, const char *dir)
{
    char *p = cellm_path_join(dir, "tokenizer_config.json");
    if (p && cellm_file_exists(p) && cellm_json_load(p, &tok->config, NULL) == CELLM_OK) {
        const cJSON *e = cellm_json_get(tok->config, "eos_token");
        if (cJSON_IsObject(e)) e = cellm_json_get(e, "content");
        if (cJSON_IsString(e)) add_eos(tok, token_id(tok, e->valuestring));
    }
    cellm_free(p);
    p = cellm_path_join(dir, "generation_config.json");
    cJSON *gen = NULL;
    if (p && cellm_file_exists(p) && cellm_json_load(p, &gen, NULL) == CELLM_OK) {
        const cJSON *e = cellm_json_get(gen, "eos_token_id");
        if (cJSON_IsNumber(e)) add_eos(tok, (int32_t)e->valuedouble);
        for (const cJSON *x = cJSON_IsArray(e) ? e->child : NULL; x; x = x->next)
            if (cJSON_IsNumber(x)) add_eos(tok, (int32_t)x->valuedouble);
    }
    cJSON_Delete(gen);
    cellm_free(p);
    p = cellm_path_join(dir, "chat_template.jinja");
    size_t len;
    if (p && cellm_file_exists(p)) cellm_read_file(p, &tok->template_file, &len, NULL);
    cellm_free(p);
}

static enum cellm_status load_json(struct cellm_tokenizer *tok, const cJSON *root,
                                   struct cellm_error *err)
{
    const char *w = tok->what;
    static const char *known[] = {"version",        "truncation", "padding",
                                  "added_tokens",   "normalizer", "pre_tokenizer",
                                  "post_processor", "decoder",    "model"};
    for (const cJSON *k = root->child; k; k = k->next) {
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok |= !strcmp(k->string, known[i]);
        if (!ok)
            return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                              "%s: top-level key \"%s\" is not "
                              "supported by cellm",
                              w, k->string);
    }
    if (cellm_json_get(root, "truncation"))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: truncation is set; cellm does not "
                          "truncate (set it to null)",
                          w);
    if (cellm_json_get(root, "padding"))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: padding is set; cellm does not pad "
                          "(set it to null)",
                          w);
    const cJSON *model = cellm_json_get(root, "model");
    if (!cJSON_IsObject(model))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"model\" is missing", w);
    const char *mtype = NULL;
    CELLM_TRY(cellm_json_str(model, "type", w, "BPE", &mtype, err));
    if (strcmp(mtype, "BPE"))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: model type \"%s\" is not supported "
                          "by cellm (only BPE)",
                          w, mtype);
    CELLM_TRY(cellm_tok_bpe_parse(model, w, &tok->bpe, err));
    const cJSON *j;
    if ((j = cellm_json_get(root, "normalizer")))
        CELLM_TRY(cellm_tok_norm_parse(j, w, &tok->norm, err));
    if ((j = cellm_json_get(root, "pre_tokenizer")))
        CELLM_TRY(cellm_tok_pre_parse(j, w, &tok->pre, err));
    tok->pre_bounded = tok->pre && cellm_tok_pre_keeps(tok->pre) &&
                       cellm_tok_bpe_total(tok->bpe, cellm_tok_pre_byte_level(tok->pre));
    if ((j = cellm_json_get(root, "decoder"))) CELLM_TRY(cellm_tok_dec_parse(j, w, &tok->dec, err));
    CELLM_TRY(parse_added(tok, cellm_json_get(root, "added_tokens"), err));
    if ((j = cellm_json_get(root, "post_processor"))) CELLM_TRY(parse_post(tok, j, err));
    tok->size = cellm_tok_bpe_size(tok->bpe);
    for (size_t i = 0; i < tok->nadded; i++) {
        /* as for the vocabulary (bpe.c): the id must be explained by entries present */
        int64_t bound = (int64_t)tok->size + (int64_t)tok->nadded + CELLM_TOK_ID_SLACK;
        if (tok->added[i].id >= bound)
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: added_tokens[%zu] has id %d, beyond the %d vocabulary ids "
                              "plus %zu added tokens (and a slack of %d)",
                              w, i, tok->added[i].id, tok->size, tok->nadded, CELLM_TOK_ID_SLACK);
    }
    for (size_t i = 0; i < tok->nadded; i++)
        if (tok->added[i].id >= tok->size) tok->size = tok->added[i].id + 1;
    for (size_t i = 0; i < tok->npost; i++)
        if (tok->post[i] >= tok->size)
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: post_processor id %d is out of range", w,
                              tok->post[i]);
    tok->added_of = cellm_malloc((size_t)(tok->size ? tok->size : 1) * sizeof *tok->added_of);
    if (!tok->added_of) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", w);
    for (int32_t i = 0; i < tok->size; i++)
        tok->added_of[i] = -1;
    for (size_t i = 0; i < tok->nadded; i++)
        tok->added_of[tok->added[i].id] = (int32_t)i;
    return build_tries(tok, err);
}

enum cellm_status cellm_tokenizer_load(const char *dir, struct cellm_tokenizer **out,
                                       struct cellm_error *err)
{
    if (!dir || !out) return cellm_errf(err, CELLM_ERR_ARG, "cellm_tokenizer_load: NULL argument");
    struct cellm_tokenizer *tok = cellm_calloc(1, sizeof *tok);
    if (!tok) return cellm_errf(err, CELLM_ERR_NOMEM, "tokenizer: out of memory");
    enum cellm_status st;
    cJSON *root = NULL;
    tok->what = cellm_path_join(dir, "tokenizer.json");
    if (!tok->what) {
        st = cellm_errf(err, CELLM_ERR_NOMEM, "tokenizer: out of memory");
    } else if (!cellm_file_exists(tok->what)) {
        st = cellm_errf(err, CELLM_ERR_NOT_FOUND, "%s: no such file", tok->what);
    } else if (!(st = cellm_json_load(tok->what, &root, err))) {
        st = load_json(tok, root, err);
    }
    cJSON_Delete(root);
    if (st) {
        cellm_tokenizer_free(tok);
        return st;
    }
    load_side_files(tok, dir);
    if ((st = cellm_tok_chat_prepare(tok, err))) {
        cellm_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return CELLM_OK;
}

void cellm_tokenizer_free(struct cellm_tokenizer *tok)
{
    if (!tok) return;
    cellm_tok_bpe_free(tok->bpe);
    cellm_tok_norm_free(tok->norm);
    cellm_tok_pre_free(tok->pre);
    cellm_tok_dec_free(tok->dec);
    cellm_free(tok->post);
    for (size_t i = 0; i < tok->nadded; i++)
        cellm_free(tok->added[i].content);
    cellm_free(tok->added);
    cellm_tok_trie_free(&tok->raw_trie);
    cellm_tok_trie_free(&tok->norm_trie);
    cellm_free(tok->added_of);
    cellm_free(tok->eos);
    cJSON_Delete(tok->config);
    cellm_free(tok->template_file);
    cellm_free(tok->template_set);
    cellm_jinja_free(tok->template_parsed);
    cellm_jinja_free(tok->template_set_parsed);
    cellm_free(tok->what);
    cellm_free(tok);
}

int cellm_tokenizer_vocab(const struct cellm_tokenizer *tok)
{
    return tok ? tok->size : 0;
}

const char *cellm_tokenizer_piece(const struct cellm_tokenizer *tok, int32_t id)
{
    size_t len;
    return tok ? cellm_tok_id_str(tok, id, &len) : NULL;
}

const int32_t *cellm_tokenizer_eos(const struct cellm_tokenizer *tok, int *n)
{
    *n = tok ? tok->neos : 0;
    return tok ? tok->eos : NULL;
}

/* What one encode call carries down its stages. */
struct run {
    struct cellm_regex_limits lim;
    size_t max_ids; /* 0 = none */
};

static enum cellm_status too_long(const struct run *r, struct cellm_error *err)
{
    return cellm_errf(err, CELLM_ERR_RANGE,
                      "tokenizer: the text has more than %zu tokens (stopped there)", r->max_ids);
}

static enum cellm_status check_run(const struct run *r, const struct cellm_tok_ids *ids,
                                   struct cellm_error *err)
{
    if (r->lim.cancel && atomic_load_explicit(r->lim.cancel, memory_order_relaxed))
        return cellm_errf(err, CELLM_ERR_CANCELLED, "tokenizer: cancelled");
    if (r->max_ids && ids->n > r->max_ids) return too_long(r, err);
    return CELLM_OK;
}

/* Normalized text of one plain segment -> pieces -> BPE ids. */
static enum cellm_status encode_plain(const struct cellm_tokenizer *tok,
                                      struct cellm_tok_cache *cache, const char *s, size_t n,
                                      int at0, const struct run *r, struct cellm_tok_ids *ids,
                                      struct cellm_error *err)
{
    struct cellm_tok_pieces pc = {0};
    enum cellm_status st = CELLM_OK;
    /* each piece will be at least one id: pre-tokenization stops as soon as it has more
     * pieces than ids are left, without walking (or holding) the rest of a long text */
    struct cellm_regex_limits lim = r->lim;
    if (r->max_ids && tok->pre_bounded && n) {
        if (ids->n >= r->max_ids) return too_long(r, err);
        lim.max_matches = r->max_ids - ids->n;
    }
    if (!cellm_tok_pieces_add(&pc, s, n, at0))
        return cellm_errf(err, CELLM_ERR_NOMEM, "tokenizer: out of memory");
    if (tok->pre) {
        st = cellm_tok_pre_apply(tok->pre, &pc, &lim, err);
        if (st == CELLM_ERR_RANGE && lim.max_matches &&
            !strncmp(err->msg, "pre-tokenizer: more than", 24))
            st = too_long(r, err);
    }
    for (size_t i = 0; !st && i < pc.n; i++) {
        st = cellm_tok_bpe_encode(tok->bpe, cache, CELLM_PIECE(&pc, i), CELLM_PIECE_LEN(&pc, i),
                                  ids, err);
        if (!st && !(i & 255)) st = check_run(r, ids, err);
    }
    if (!st) st = check_run(r, ids, err);
    cellm_tok_pieces_free(&pc);
    return st;
}

static enum cellm_status encode_segment(const struct cellm_tokenizer *tok,
                                        struct cellm_tok_cache *cache, const char *s, size_t n,
                                        int at0, const struct run *r, struct cellm_tok_ids *ids,
                                        struct cellm_error *err)
{
    char *norm = NULL;
    size_t nl = n, *t = NULL, cnt = 0;
    if (tok->norm) CELLM_TRY(cellm_tok_norm_apply(tok->norm, s, n, &r->lim, &norm, &nl, err));
    const char *ns = norm ? norm : s;
    enum cellm_status st =
        cellm_tok_added_split(&tok->norm_trie, tok->added, ns, nl, &t, &cnt, err);
    for (size_t k = 0; !st && k < cnt; k++) {
        if (t[3 * k + 2] != (size_t)-1)
            st = cellm_tok_ids_push(ids, tok->added[t[3 * k + 2]].id)
                     ? check_run(r, ids, err)
                     : cellm_errf(err, CELLM_ERR_NOMEM, "tokenizer: out of memory");
        else
            st = encode_plain(tok, cache, ns + t[3 * k], t[3 * k + 1] - t[3 * k],
                              at0 && t[3 * k] == 0, r, ids, err);
    }
    cellm_free(t);
    cellm_free(norm);
    return st;
}

enum cellm_status cellm_tokenizer_encode(const struct cellm_tokenizer *tok, const char *text,
                                         size_t len, int add_special, int32_t **ids, size_t *n,
                                         struct cellm_error *err)
{
    return cellm_tokenizer_encode_opts(tok, text, len, add_special, NULL, ids, n, err);
}

enum cellm_status cellm_tokenizer_encode_opts(const struct cellm_tokenizer *tok, const char *text,
                                              size_t len, int add_special,
                                              const struct cellm_encode_opts *o, int32_t **ids,
                                              size_t *n, struct cellm_error *err)
{
    if (!tok || (!text && len) || !ids || !n)
        return cellm_errf(err, CELLM_ERR_ARG, "cellm_tokenizer_encode: NULL argument");
    struct run r = {{0}, 0};
    if (o) {
        r.lim.match_steps = o->regex_steps;
        r.lim.cancel = o->cancel;
        /* the post-processor adds its ids at the end: the text's own may use the rest */
        r.max_ids = o->max_ids;
        if (r.max_ids && add_special && tok->post) {
            size_t extra = 0;
            for (size_t i = 0; i < tok->npost; i++)
                extra += tok->post[i] >= 0;
            r.max_ids = r.max_ids > extra ? r.max_ids - extra : 1;
        }
    }
    struct cellm_tok_buf clean = {0};
    if (cellm_tok_utf8_lossy(text ? text : "", len, &clean))
        return cellm_errf(err, CELLM_ERR_NOMEM, "tokenizer: out of memory");
    struct cellm_tok_ids out = {0};
    struct cellm_tok_cache *cache = cellm_tok_cache_new();
    size_t *t = NULL, cnt = 0;
    const char *s = clean.p ? clean.p : "";
    enum cellm_status st =
        cache ? cellm_tok_added_split(&tok->raw_trie, tok->added, s, clean.n, &t, &cnt, err)
              : cellm_errf(err, CELLM_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t k = 0; !st && k < cnt; k++) {
        if (t[3 * k + 2] != (size_t)-1)
            st = cellm_tok_ids_push(&out, tok->added[t[3 * k + 2]].id)
                     ? check_run(&r, &out, err)
                     : cellm_errf(err, CELLM_ERR_NOMEM, "tokenizer: out of memory");
        else
            st = encode_segment(tok, cache, s + t[3 * k], t[3 * k + 1] - t[3 * k], t[3 * k] == 0,
                                &r, &out, err);
    }
    cellm_free(t);
    cellm_tok_cache_free(cache);
    cellm_free(clean.p);
    if (!st && add_special && tok->post) {
        struct cellm_tok_ids wrapped = {0};
        for (size_t i = 0; i < tok->npost && !st; i++) {
            if (tok->post[i] >= 0) {
                if (!cellm_tok_ids_push(&wrapped, tok->post[i])) st = CELLM_ERR_NOMEM;
                continue;
            }
            for (size_t k = 0; k < out.n && !st; k++)
                if (!cellm_tok_ids_push(&wrapped, out.v[k])) st = CELLM_ERR_NOMEM;
        }
        cellm_free(out.v);
        out = wrapped;
        if (st) st = cellm_errf(err, CELLM_ERR_NOMEM, "tokenizer: out of memory");
    }
    if (st) {
        cellm_free(out.v);
        return st;
    }
    if (!out.v && !(out.v = cellm_malloc(sizeof *out.v))) /* never hand back NULL */
        return cellm_errf(err, CELLM_ERR_NOMEM, "tokenizer: out of memory");
    *ids = out.v;
    *n = out.n;
    return CELLM_OK;
}

/* Token strings of ids, decoded; used by decode and the streaming decoder. */
enum cellm_status cellm_tok_decode_raw(const struct cellm_tokenizer *tok, const int32_t *ids,
                                       size_t n, int skip_special, struct cellm_tok_buf *outb,
                                       struct cellm_error *err)
{
    struct cellm_tok_pieces pc = {0};
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        size_t len = 0;
        const char *s = cellm_tok_id_str(tok, ids[i], &len);
        if (!s) {
            cellm_tok_pieces_free(&pc);
            return cellm_errf(err, CELLM_ERR_RANGE,
                              "decode: id %d is outside the vocabulary "
                              "[0, %d)",
                              ids[i], tok->size);
        }
        if (skip_special && tok->added_of[ids[i]] >= 0 && tok->added[tok->added_of[ids[i]]].special)
            continue;
        ok = cellm_tok_pieces_add(&pc, s, len, i == 0);
    }
    enum cellm_status st =
        ok ? CELLM_OK : cellm_errf(err, CELLM_ERR_NOMEM, "decode: out of memory");
    if (!st && tok->dec) st = cellm_tok_dec_apply(tok->dec, &pc, err);
    for (size_t i = 0; !st && i < pc.n; i++) {
        if ((!tok->dec && i > 0 && !cellm_tok_buf_put(outb, " ", 1)) ||
            !cellm_tok_buf_put(outb, CELLM_PIECE(&pc, i), CELLM_PIECE_LEN(&pc, i)))
            st = cellm_errf(err, CELLM_ERR_NOMEM, "decode: out of memory");
    }
    if (!st && !cellm_tok_buf_put(outb, "", 0))
        st = cellm_errf(err, CELLM_ERR_NOMEM, "decode: out of memory");
    cellm_tok_pieces_free(&pc);
    return st;
}

enum cellm_status cellm_tokenizer_decode(const struct cellm_tokenizer *tok, const int32_t *ids,
                                         size_t n, int skip_special, char **text,
                                         struct cellm_error *err)
{
    if (!tok || (!ids && n) || !text)
        return cellm_errf(err, CELLM_ERR_ARG, "cellm_tokenizer_decode: NULL argument");
    struct cellm_tok_buf b = {0};
    enum cellm_status st = cellm_tok_decode_raw(tok, ids, n, skip_special, &b, err);
    if (st) {
        cellm_free(b.p);
        return st;
    }
    *text = b.p;
    return CELLM_OK;
}

enum cellm_status cellm_tokenizer_token_bytes(const struct cellm_tokenizer *tok, int32_t id,
                                              struct cellm_tok_buf *b, int *text,
                                              struct cellm_error *err)
{
    *text = 0;
    size_t len = 0;
    const char *s = cellm_tok_id_str(tok, id, &len);
    if (!s) return CELLM_OK;
    if (tok->added_of[id] >= 0) {
        if (tok->added[tok->added_of[id]].special) return CELLM_OK;
        *text = 1;
        return cellm_tok_buf_put(b, s, len) ? CELLM_OK
                                            : cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    }
    struct cellm_tok_buf cur = {0};
    if (!cellm_tok_buf_put(&cur, s, len)) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    enum cellm_status st = tok->dec ? cellm_tok_dec_token(tok->dec, &cur, err) : CELLM_OK;
    if (!st && cur.n && !cellm_tok_buf_put(b, cur.p, cur.n))
        st = cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    *text = !st && cur.n;
    cellm_free(cur.p);
    return st;
}
