/*
 * ckpt.c: opening a checkpoint directory: choosing files, mapping each once, merging
 * their tensors under canonical names.
 */
#include "ckpt.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"

static void warn(struct cellm_ckpt *c, const char *fmt, const char *a, const char *b)
{
    size_t len = strlen(c->warnings);
    snprintf(c->warnings + len, sizeof c->warnings - len, fmt, a, b);
    len = strlen(c->warnings);
    if (len + 1 < sizeof c->warnings) {
        c->warnings[len] = '\n';
        c->warnings[len + 1] = 0;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static void free_names(char **names, int n)
{
    for (int i = 0; i < n; i++)
        cellm_free(names[i]);
    cellm_free(names);
}

/* Every *.safetensors in dir, sorted. */
static enum cellm_status list_safetensors(const char *dir, char ***out, int *n,
                                          struct cellm_error *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return cellm_errf(err, CELLM_ERR_NOT_FOUND, "%s: cannot open directory", dir);
    int cap = 0;
    char **names = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!ends_with(de->d_name, ".safetensors") || de->d_name[0] == '.') continue;
        if (!strcmp(de->d_name, "oracle.safetensors"))
            continue; /* cellm's own reference dumps live beside the weights */
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **nn = cellm_realloc(names, (size_t)cap * sizeof *names);
            if (!nn) goto nomem;
            names = nn;
        }
        names[*n] = cellm_strdup(de->d_name);
        if (!names[*n]) goto nomem;
        (*n)++;
    }
    closedir(d);
    if (*n > 1) /* names is NULL when the directory holds none: qsort wants a pointer */
        qsort(names, (size_t)*n, sizeof *names, cmp_str);
    *out = names;
    return CELLM_OK;
nomem:
    closedir(d);
    free_names(names, *n);
    *n = 0;
    return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", dir);
}

/* Shard names from the index's weight_map (distinct, sorted). */
static enum cellm_status index_shards(const cJSON *wm, const char *path, char ***out, int *n,
                                      struct cellm_error *err)
{
    int cnt = cJSON_GetArraySize(wm), k = 0;
    char **names = cellm_calloc((size_t)cnt + 1, sizeof *names);
    if (!names) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", path);
    const cJSON *e;
    cJSON_ArrayForEach(e, wm)
    {
        if (!cJSON_IsString(e)) {
            free_names(names, k);
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: weight_map[\"%s\"] is a %s, expected a file name", path,
                              e->string, cellm_json_type(e));
        }
        if (strchr(e->valuestring, '/') || !strcmp(e->valuestring, "..")) {
            free_names(names, k);
            return cellm_errf(
                err, CELLM_ERR_FORMAT,
                "%s: weight_map[\"%s\"] names \"%s\", expected a file in the directory", path,
                e->string, e->valuestring);
        }
        /* a run of entries naming the shard just added is the common case; the rest of
         * the repeats go after the sort (an index of n entries costs O(n log n)) */
        if (k && !strcmp(names[k - 1], e->valuestring)) continue;
        names[k] = cellm_strdup(e->valuestring);
        if (!names[k]) {
            free_names(names, k);
            return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", path);
        }
        k++;
    }
    if (k > 1) qsort(names, (size_t)k, sizeof *names, cmp_str);
    int u = 0;
    for (int i = 0; i < k; i++) {
        if (u && !strcmp(names[u - 1], names[i])) {
            cellm_free(names[i]);
            continue;
        }
        names[u++] = names[i];
    }
    *out = names;
    *n = u;
    return CELLM_OK;
}

static const char *strip_scheme(const char *name, const char **scheme)
{
    static const char *lm = "language_model.", *mlm = "model.language_model.";
    if (!strncmp(name, mlm, strlen(mlm))) {
        *scheme = mlm;
        return name + strlen(mlm);
    }
    if (!strncmp(name, lm, strlen(lm))) {
        *scheme = lm;
        return name + strlen(lm);
    }
    *scheme = "";
    return name;
}

static int other_tower(const char *name)
{
    return !strncmp(name, "vision_tower.", 13) || !strncmp(name, "multi_modal_projector.", 22) ||
           !strncmp(name, "model.vision_tower.", 19) ||
           !strncmp(name, "model.multi_modal_projector.", 28) ||
           /* Qwen3.5's vision tower (its published multimodal layout) */
           !strncmp(name, "model.visual.", 13) || !strncmp(name, "visual.", 7) ||
           /* Gemma 3n's audio tower and the embedders of its audio and vision tokens */
           !strncmp(name, "model.audio_tower.", 18) || !strncmp(name, "model.embed_audio.", 18) ||
           !strncmp(name, "model.embed_vision.", 19) || !strncmp(name, "audio_tower.", 12) ||
           !strncmp(name, "embed_audio.", 12) || !strncmp(name, "embed_vision.", 13);
}

static int entry_cmp(const void *a, const void *b)
{
    const struct cellm_ckpt_entry *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* Merges all files' tensors under canonical names. */
static enum cellm_status merge(struct cellm_ckpt *c, struct cellm_error *err)
{
    int total = 0;
    for (int f = 0; f < c->n_files; f++)
        total += c->files[f].n;
    c->entries = cellm_calloc((size_t)total + 1, sizeof *c->entries);
    if (!c->entries) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", c->dir);
    const char *scheme = NULL, *first = NULL;
    for (int f = 0; f < c->n_files; f++)
        for (int i = 0; i < c->files[f].n; i++) {
            const struct cellm_st_tensor *t = &c->files[f].tensors[i];
            if (other_tower(t->name)) {
                c->n_ignored++;
                continue;
            }
            const char *s;
            const char *canon = strip_scheme(t->name, &s);
            /* the head of a nested checkpoint may sit at the top level (v5 re-saves) */
            int neutral = !strncmp(t->name, "lm_head.", 8);
            if (!neutral && scheme && strcmp(scheme, s))
                return cellm_errf(
                    err, CELLM_ERR_FORMAT,
                    "%s: tensor names mix naming schemes (%s and %s); one checkpoint must use one",
                    c->dir, first, t->name);
            if (!neutral && !scheme) {
                scheme = s;
                first = t->name;
            }
            struct cellm_ckpt_entry *en = &c->entries[c->n++];
            en->name = canon;
            en->t = t;
            en->file = f;
            if (!strcmp(s, "model.language_model.")) {
                /* "model.language_model.X" is the v5 name of "model.X" */
                char *nm = cellm_path_join("model", canon);
                if (!nm) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", c->dir);
                nm[5] = '.';
                en->name = nm;
                en->owned_name = 1;
            }
        }
    c->scheme = scheme ? scheme : "";
    qsort(c->entries, (size_t)c->n, sizeof *c->entries, entry_cmp);
    for (int i = 1; i < c->n; i++)
        if (!strcmp(c->entries[i - 1].name, c->entries[i].name)) {
            if (c->entries[i - 1].file == c->entries[i].file)
                continue; /* impossible: st_parse rejects duplicates */
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: tensor %s is in both %s and %s", c->dir,
                              c->entries[i].name, cellm_ckpt_file_name(c, c->entries[i - 1].file),
                              cellm_ckpt_file_name(c, c->entries[i].file));
        }
    if (c->n == 0)
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: the safetensors files hold no tensors",
                          c->dir);
    return CELLM_OK;
}

static enum cellm_status open_files(struct cellm_ckpt *c, char **names, int n,
                                    struct cellm_error *err)
{
    c->files = cellm_calloc((size_t)n, sizeof *c->files);
    if (!c->files) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", c->dir);
    for (int i = 0; i < n; i++) {
        char *p = cellm_path_join(c->dir, names[i]);
        if (!p) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", c->dir);
        enum cellm_status st = cellm_st_open(p, &c->files[i], err);
        cellm_free(p);
        if (st) return st;
        c->n_files = i + 1;
    }
    return CELLM_OK;
}

/* With an index: checks that every named tensor is in its named shard. */
static enum cellm_status check_index(struct cellm_ckpt *c, const cJSON *wm, const char *ipath,
                                     struct cellm_error *err)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, wm)
    {
        int found = 0;
        for (int f = 0; f < c->n_files && !found; f++) {
            const char *base = strrchr(c->files[f].path, '/');
            base = base ? base + 1 : c->files[f].path;
            if (!strcmp(base, e->valuestring))
                found = cellm_st_find(&c->files[f], e->string) != NULL;
        }
        if (!found)
            return cellm_errf(err, CELLM_ERR_FORMAT,
                              "%s: weight_map puts tensor %s in %s, but that file does not hold it",
                              ipath, e->string, e->valuestring);
    }
    return CELLM_OK;
}

enum cellm_status cellm_ckpt_open(const char *dir, struct cellm_ckpt *c, struct cellm_error *err)
{
    memset(c, 0, sizeof *c);
    enum cellm_status st = CELLM_OK;
    char **names = NULL;
    int n = 0;
    cJSON *index = NULL;
    char *single = NULL, *ipath = NULL;
    c->dir = cellm_strdup(dir);
    single = cellm_path_join(dir, "model.safetensors");
    ipath = cellm_path_join(dir, "model.safetensors.index.json");
    if (!c->dir || !single || !ipath) {
        st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", dir);
        goto out;
    }
    if (cellm_file_exists(single)) {
        names = cellm_calloc(1, sizeof *names);
        if (!names || !(names[0] = cellm_strdup("model.safetensors"))) {
            st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", dir);
            goto out;
        }
        n = 1;
    } else if (cellm_file_exists(ipath)) {
        if ((st = cellm_json_load(ipath, &index, err))) goto out;
        const cJSON *wm = cellm_json_get(index, "weight_map");
        if (!wm || !cJSON_IsObject(wm)) {
            st = cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"weight_map\" missing or not an object",
                            ipath);
            goto out;
        }
        if ((st = index_shards(wm, ipath, &names, &n, err))) goto out;
        const char *missing = NULL;
        for (int i = 0; i < n && !missing; i++) {
            char *p = cellm_path_join(dir, names[i]);
            if (!p) {
                st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", dir);
                goto out;
            }
            if (!cellm_file_exists(p)) missing = names[i];
            cellm_free(p);
        }
        if (missing) {
            warn(c,
                 "%s names shard %s, which does not exist; using the *.safetensors files present "
                 "instead",
                 "model.safetensors.index.json", missing);
            c->stale_index = ipath;
            ipath = NULL;
            free_names(names, n);
            names = NULL;
            if ((st = list_safetensors(dir, &names, &n, err))) goto out;
        } else {
            if ((st = open_files(c, names, n, err)) || (st = check_index(c, wm, ipath, err)))
                goto out;
            goto merge;
        }
    } else {
        if ((st = list_safetensors(dir, &names, &n, err))) goto out;
    }
    if (n == 0) {
        st = cellm_errf(
            err, CELLM_ERR_NOT_FOUND,
            "%s: no model.safetensors, model.safetensors.index.json or *.safetensors file", dir);
        goto out;
    }
    if ((st = open_files(c, names, n, err))) goto out;
merge:
    st = merge(c, err);
out:
    free_names(names, n);
    cJSON_Delete(index);
    cellm_free(single);
    cellm_free(ipath);
    if (st) cellm_ckpt_close(c);
    return st;
}

void cellm_ckpt_close(struct cellm_ckpt *c)
{
    if (!c) return;
    for (int i = 0; i < c->n; i++)
        if (c->entries[i].owned_name) cellm_free((char *)c->entries[i].name);
    for (int i = 0; i < c->n_files; i++)
        cellm_st_close(&c->files[i]);
    cellm_free(c->files);
    cellm_free(c->entries);
    cellm_free(c->stale_index);
    cellm_free(c->dir);
    memset(c, 0, sizeof *c);
}

const struct cellm_ckpt_entry *cellm_ckpt_find(const struct cellm_ckpt *c, const char *name)
{
    int lo = 0, hi = c->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int r = strcmp(c->entries[mid].name, name);
        if (r == 0) return &c->entries[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

const char *cellm_ckpt_file_name(const struct cellm_ckpt *c, int file)
{
    if (file < 0 || file >= c->n_files || !c->files[file].path) return "?";
    const char *s = strrchr(c->files[file].path, '/');
    return s ? s + 1 : c->files[file].path;
}

enum cellm_status cellm_ckpt_missing(const struct cellm_ckpt *c, const char *name,
                                     struct cellm_error *err)
{
    if (c->stale_index) {
        cJSON *idx = NULL;
        struct cellm_error ignore;
        if (cellm_json_load(c->stale_index, &idx, &ignore) == CELLM_OK) {
            const cJSON *wm = cellm_json_get(idx, "weight_map");
            char full[512];
            snprintf(full, sizeof full, "%s%s", c->scheme, name);
            const cJSON *s = wm ? cellm_json_get(wm, full) : NULL;
            if (s && cJSON_IsString(s)) {
                enum cellm_status st =
                    cellm_errf(err, CELLM_ERR_NOT_FOUND,
                               "%s: tensor %s is missing: model.safetensors.index.json puts it in "
                               "shard %s, which does not exist, and no other file holds it",
                               c->dir, full, s->valuestring);
                cJSON_Delete(idx);
                return st;
            }
            cJSON_Delete(idx);
        }
    }
    return cellm_errf(err, CELLM_ERR_NOT_FOUND, "%s: tensor %s%s is missing from the checkpoint",
                      c->dir, c->scheme ? c->scheme : "", name);
}
