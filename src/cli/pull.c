/*
 * pull.c: `cellm pull ORG/NAME[@REV]` and --download: fetches what a checkpoint needs
 * from a Hugging Face hub into the cache layout huggingface_hub uses, so that every
 * tool sharing the cache finds it:
 *
 *   models--ORG--NAME/blobs/<sha256 or git blob id>       file contents
 *   models--ORG--NAME/snapshots/<commit>/<file> -> ../../blobs/<id>
 *   models--ORG--NAME/refs/<branch>                        the commit
 *
 * Only the files a checkpoint needs: config, generation config, tokenizer files, the
 * chat template, the weight index and the weights it names. A transfer goes to
 * blobs/<id>.incomplete and is resumed from there (HTTP Range) after an interruption, in
 * this run (a few retries) or the next; it becomes the blob only once its size and, for
 * LFS files, its sha256 match what the hub reported. A mismatch deletes the download.
 */
#include "hub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef CELLM_HAVE_CURL
char *hub_pull(const char *cmd, const struct hub_ref *r, int quiet)
{
    (void)r;
    (void)quiet;
    fprintf(stderr,
            "cellm %s: this cellm was built without libcurl, so it cannot download "
            "(install libcurl4-openssl-dev and libssl-dev and reconfigure)\n",
            cmd);
    return NULL;
}
#else
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>

struct pull {
    const char *cmd;
    CURL *curl;
    struct curl_slist *headers;
    char endpoint[512];
    int have_token, quiet, tty;
    char folder[1024]; /* .../models--ORG--NAME */
    /* per request */
    char hub_msg[512]; /* X-Error-Message */
    const char *file;  /* for progress */
    double last_progress;
};

struct membuf {
    char *p;
    size_t n;
};

static size_t mem_write(char *data, size_t sz, size_t nm, void *u)
{
    struct membuf *b = u;
    size_t add = sz * nm;
    if (b->n + add > (64u << 20)) return 0; /* metadata is small; refuse a runaway */
    char *p = realloc(b->p, b->n + add + 1);
    if (!p) return 0;
    memcpy(p + b->n, data, add);
    b->p = p;
    b->n += add;
    p[b->n] = 0;
    return add;
}

static size_t header_cb(char *data, size_t sz, size_t nm, void *u)
{
    struct pull *pl = u;
    size_t n = sz * nm;
    static const char key[] = "x-error-message:";
    if (n > sizeof key - 1 && !strncasecmp(data, key, sizeof key - 1)) {
        const char *v = data + sizeof key - 1;
        while (*v == ' ')
            v++;
        size_t len = n - (size_t)(v - data);
        while (len && (v[len - 1] == '\r' || v[len - 1] == '\n'))
            len--;
        if (len >= sizeof pl->hub_msg) len = sizeof pl->hub_msg - 1;
        memcpy(pl->hub_msg, v, len);
        pl->hub_msg[len] = 0;
    }
    return n;
}

static void request_reset(struct pull *pl, const char *url)
{
    curl_easy_reset(pl->curl);
    curl_easy_setopt(pl->curl, CURLOPT_URL, url);
    curl_easy_setopt(pl->curl, CURLOPT_HTTPHEADER, pl->headers);
    curl_easy_setopt(pl->curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(pl->curl, CURLOPT_USERAGENT, "cellm");
    curl_easy_setopt(pl->curl, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(pl->curl, CURLOPT_HEADERDATA, pl);
    curl_easy_setopt(pl->curl, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a stalled transfer (under 1 byte/s for a minute) is an interruption, then resumed */
    curl_easy_setopt(pl->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(pl->curl, CURLOPT_LOW_SPEED_TIME, 60L);
    pl->hub_msg[0] = 0;
}

/* An HTTP error from the hub: its own message (X-Error-Message, else the JSON "error"),
 * and what to do about a missing token. */
static void hub_error(struct pull *pl, const char *what, long code, const struct membuf *body)
{
    char msg[512] = "";
    if (pl->hub_msg[0])
        snprintf(msg, sizeof msg, "%s", pl->hub_msg);
    else if (body && body->p) {
        cJSON *j = cJSON_Parse(body->p);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        if (cJSON_IsString(e)) snprintf(msg, sizeof msg, "%s", e->valuestring);
        cJSON_Delete(j);
    }
    const char *hint = "";
    if ((code == 401 || code == 403) && !pl->have_token)
        hint = " (no token was sent: set HF_TOKEN to a token with access to the repository)";
    else if (code == 401 || code == 403)
        hint = " (HF_TOKEN was sent; does it have access to the repository?)";
    fprintf(stderr, "cellm %s: %s: HTTP %ld from the hub: %s%s\n", pl->cmd, what, code,
            msg[0] ? msg : "no message", hint);
}

static int mkdirs(const char *path)
{
    char buf[1400];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST) return 0;
            *p = '/';
        }
    return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static int sha256_file(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    static unsigned char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0)
        ok = EVP_DigestUpdate(c, buf, n);
    unsigned char md[32];
    unsigned int mdlen = 0;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(c, md, &mdlen) && mdlen == 32;
    EVP_MD_CTX_free(c);
    fclose(f);
    for (int i = 0; ok && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return ok;
}

static int progress_cb(void *u, curl_off_t total, curl_off_t now, curl_off_t ut, curl_off_t un)
{
    (void)ut;
    (void)un;
    struct pull *pl = u;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    if (pl->tty && total > 0 && t - pl->last_progress > 0.2) {
        pl->last_progress = t;
        fprintf(stderr, "\r  %s  %.1f / %.1f MB  %3d%%", pl->file, (double)now / 1e6,
                (double)total / 1e6, (int)(100 * now / total));
    }
    return 0;
}

struct dl {
    FILE *f;
};

static size_t file_write(char *data, size_t sz, size_t nm, void *u)
{
    struct dl *d = u;
    return fwrite(data, sz, nm, d->f) == nm ? sz * nm : 0;
}

/* One attempt at url into path (appending from its current size). Returns the curl code;
 * *http gets the status. */
static CURLcode fetch_once(struct pull *pl, const char *url, const char *path, long *http)
{
    long long have = file_size(path);
    if (have < 0) have = 0;
    struct dl d = {fopen(path, "ab")};
    if (!d.f) return CURLE_WRITE_ERROR;
    request_reset(pl, url);
    curl_easy_setopt(pl->curl, CURLOPT_WRITEFUNCTION, file_write);
    curl_easy_setopt(pl->curl, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(pl->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(pl->curl, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(pl->curl, CURLOPT_XFERINFODATA, pl);
    if (have > 0) curl_easy_setopt(pl->curl, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)have);
    /* a body is only written for a 2xx answer; errors are read from the status */
    curl_easy_setopt(pl->curl, CURLOPT_FAILONERROR, 1L);
    CURLcode rc = curl_easy_perform(pl->curl);
    *http = 0;
    curl_easy_getinfo(pl->curl, CURLINFO_RESPONSE_CODE, http);
    if (fclose(d.f) && rc == CURLE_OK) rc = CURLE_WRITE_ERROR;
    return rc;
}

static int transient(CURLcode rc)
{
    return rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
           rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_COULDNT_CONNECT || rc == CURLE_GOT_NOTHING;
}

/* Downloads one file of the repository into blobs/<id> (unless there already) and links
 * it into the snapshot. size < 0: unknown; sha256 NULL: not an LFS file. */
static int get_file(struct pull *pl, const char *repo, const char *commit, const char *name,
                    const char *id, long long size, const char *sha256)
{
    char blob[1400], part[1420], url[2048], link[1400], target[1400];
    snprintf(blob, sizeof blob, "%s/blobs/%s", pl->folder, id);
    snprintf(part, sizeof part, "%s.incomplete", blob);
    snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", pl->endpoint, repo, commit, name);
    pl->file = name;
    pl->last_progress = 0;
    long long have = file_size(blob);
    if (have < 0 || (size >= 0 && have != size)) {
        if (have >= 0) remove(blob);
        CURLcode rc = CURLE_OK;
        long http = 0;
        for (int attempt = 0; attempt < 5; attempt++) {
            if (attempt) usleep(200000u * (unsigned)attempt);
            rc = fetch_once(pl, url, part, &http);
            if (rc == CURLE_RANGE_ERROR) { /* the server ignored the range: start over */
                remove(part);
                rc = fetch_once(pl, url, part, &http);
            }
            if (rc == CURLE_HTTP_RETURNED_ERROR && http == 416 && size >= 0 &&
                file_size(part) == size)
                rc = CURLE_OK; /* complete already; checked below */
            if (!transient(rc)) break;
        }
        if (pl->tty) fprintf(stderr, "\r\033[K");
        if (rc == CURLE_HTTP_RETURNED_ERROR) {
            /* what came before stays for the next run, unless it is nothing or too much */
            if (http == 416 || file_size(part) <= 0) remove(part);
            hub_error(pl, name, http, NULL);
            return 0;
        }
        if (rc != CURLE_OK) {
            fprintf(stderr,
                    "cellm %s: %s: %s; %lld bytes kept in %s, the next `cellm pull` resumes "
                    "from there\n",
                    pl->cmd, name, curl_easy_strerror(rc), file_size(part), part);
            return 0;
        }
        long long got = file_size(part);
        if (size >= 0 && got != size) {
            remove(part);
            fprintf(stderr,
                    "cellm %s: %s: downloaded %lld bytes, the hub reported %lld; the download "
                    "was removed\n",
                    pl->cmd, name, got, size);
            return 0;
        }
        char hex[65];
        if (sha256 && (!sha256_file(part, hex) || strcasecmp(hex, sha256))) {
            remove(part);
            fprintf(stderr,
                    "cellm %s: %s: sha256 mismatch: got %s, the hub reported %s; the download "
                    "was removed\n",
                    pl->cmd, name, hex, sha256);
            return 0;
        }
        if (rename(part, blob)) {
            fprintf(stderr, "cellm %s: %s: %s\n", pl->cmd, blob, strerror(errno));
            return 0;
        }
        if (!pl->quiet) fprintf(stderr, "  %s  %lld bytes\n", name, got);
    } else if (!pl->quiet) {
        fprintf(stderr, "  %s  already in the cache\n", name);
    }
    snprintf(link, sizeof link, "%s/snapshots/%s/%s", pl->folder, commit, name);
    snprintf(target, sizeof target, "../../blobs/%s", id);
    remove(link);
    if (symlink(target, link)) {
        fprintf(stderr, "cellm %s: %s: %s\n", pl->cmd, link, strerror(errno));
        return 0;
    }
    return 1;
}

/* GET url into b; returns the HTTP status, or 0 with a message on a transport error. */
static long get_json(struct pull *pl, const char *url, struct membuf *b)
{
    request_reset(pl, url);
    curl_easy_setopt(pl->curl, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(pl->curl, CURLOPT_WRITEDATA, b);
    CURLcode rc = curl_easy_perform(pl->curl);
    if (rc != CURLE_OK) {
        fprintf(stderr, "cellm %s: %s: %s\n", pl->cmd, url, curl_easy_strerror(rc));
        return 0;
    }
    long code = 0;
    curl_easy_getinfo(pl->curl, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

/* Files of a checkpoint other than the weights. */
static int wanted_meta(const char *name)
{
    static const char *const names[] = {
        "config.json",           "generation_config.json",      "tokenizer.json",
        "tokenizer_config.json", "special_tokens_map.json",     "chat_template.jinja",
        "chat_template.json",    "model.safetensors.index.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i])) return 1;
    return 0;
}

static int is_weights(const char *name)
{
    size_t n = strlen(name);
    return !strchr(name, '/') && n > 12 && !strcmp(name + n - 12, ".safetensors");
}

/* Whether the weight index (already in the snapshot) names file `name`. */
static int index_names(const cJSON *index, const char *name)
{
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(index, "weight_map"), *e;
    cJSON_ArrayForEach(e, map) if (cJSON_IsString(e) && !strcmp(e->valuestring, name)) return 1;
    return 0;
}

static cJSON *load_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct membuf b = {0};
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if (!mem_write(buf, 1, n, &b)) break;
    fclose(f);
    cJSON *j = b.p ? cJSON_Parse(b.p) : NULL;
    free(b.p);
    return j;
}

static int sibling_get(struct pull *pl, const char *repo, const char *commit, const cJSON *s)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "rfilename"));
    const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(s, "lfs");
    const char *sha = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(lfs, "sha256"));
    const char *blob_id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "blobId"));
    const cJSON *sz = cJSON_GetObjectItemCaseSensitive(lfs ? lfs : s, "size");
    long long size = cJSON_IsNumber(sz) ? (long long)sz->valuedouble : -1;
    const char *id = sha ? sha : blob_id;
    if (!id || strchr(id, '/') || strstr(id, "..")) {
        fprintf(stderr, "cellm %s: %s: the hub gave no blob id or sha256 for it\n", pl->cmd, name);
        return 0;
    }
    return get_file(pl, repo, commit, name, id, size, sha);
}

static char *pull_repo(struct pull *pl, const struct hub_ref *r)
{
    char url[2048], path[1400];
    snprintf(url, sizeof url, "%s/api/models/%s/revision/%s?blobs=true", pl->endpoint, r->repo,
             r->revision);
    struct membuf b = {0};
    long code = get_json(pl, url, &b);
    char *out = NULL;
    cJSON *info = NULL, *index = NULL;
    if (!code) goto done;
    if (code != 200) {
        hub_error(pl, r->repo, code, &b);
        goto done;
    }
    info = cJSON_Parse(b.p ? b.p : "");
    const char *commit = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(info, "sha"));
    const cJSON *sibs = cJSON_GetObjectItemCaseSensitive(info, "siblings"), *s;
    if (!commit || !cJSON_IsArray(sibs) || strchr(commit, '/') || strstr(commit, "..")) {
        fprintf(stderr, "cellm %s: %s: the hub's answer has no \"sha\" and \"siblings\"\n", pl->cmd,
                url);
        goto done;
    }
    int has_config = 0, n_weights = 0, has_single = 0;
    cJSON_ArrayForEach(s, sibs)
    {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "rfilename"));
        has_config |= name && !strcmp(name, "config.json");
        n_weights += name && is_weights(name);
        has_single |= name && !strcmp(name, "model.safetensors");
    }
    if (!has_config || !n_weights) {
        fprintf(stderr,
                "cellm %s: %s has no %s; cellm needs a checkpoint in safetensors with its "
                "config.json (a GGUF-only repository will not do)\n",
                pl->cmd, r->repo, has_config ? "*.safetensors weights" : "config.json");
        goto done;
    }
    snprintf(path, sizeof path, "%s/blobs", pl->folder);
    if (!mkdirs(path)) goto io_error;
    snprintf(path, sizeof path, "%s/snapshots/%s", pl->folder, commit);
    if (!mkdirs(path)) goto io_error;
    if (!pl->quiet) fprintf(stderr, "pulling %s@%s (%.12s)\n", r->repo, r->revision, commit);
    cJSON_ArrayForEach(s, sibs)
    {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "rfilename"));
        if (name && wanted_meta(name) && !sibling_get(pl, r->repo, commit, s)) goto done;
    }
    snprintf(path, sizeof path, "%s/snapshots/%s/model.safetensors.index.json", pl->folder, commit);
    index = load_json(path);
    cJSON_ArrayForEach(s, sibs)
    {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "rfilename"));
        /* the files the loader reads: model.safetensors, else those the index names, else
         * every *.safetensors but the reference outputs */
        if (!name || !is_weights(name) || !strcmp(name, "oracle.safetensors")) continue;
        if (index ? !index_names(index, name) : has_single && strcmp(name, "model.safetensors"))
            continue;
        if (!sibling_get(pl, r->repo, commit, s)) goto done;
    }
    /* a branch or tag records its commit, so that later lookups by name find the snapshot */
    if (strcmp(r->revision, commit)) {
        snprintf(path, sizeof path, "%s/refs/%s", pl->folder, r->revision);
        char *slash = strrchr(path, '/');
        *slash = 0;
        if (!mkdirs(path)) goto io_error;
        *slash = '/';
        FILE *f = fopen(path, "w");
        if (!f || fputs(commit, f) < 0 || fclose(f)) goto io_error;
    }
    snprintf(path, sizeof path, "%s/snapshots/%s", pl->folder, commit);
    out = strdup(path);
    if (!pl->quiet) fprintf(stderr, "%s\n", out);
    goto done;
io_error:
    fprintf(stderr, "cellm %s: %s: %s\n", pl->cmd, path, strerror(errno));
done:
    cJSON_Delete(index);
    cJSON_Delete(info);
    free(b.p);
    return out;
}

/* The token: $HF_TOKEN, else the file `huggingface-cli login` writes. */
static char *find_token(void)
{
    const char *e = getenv("HF_TOKEN");
    if (e && *e) return strdup(e);
    char path[1024], tok[512];
    const char *home = getenv("HF_HOME");
    if (home && *home)
        snprintf(path, sizeof path, "%s/token", home);
    else
        snprintf(path, sizeof path, "%s/.cache/huggingface/token",
                 getenv("HOME") ? getenv("HOME") : ".");
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *ok = fgets(tok, sizeof tok, f);
    fclose(f);
    if (!ok) return NULL;
    tok[strcspn(tok, "\r\n")] = 0;
    return *tok ? strdup(tok) : NULL;
}

char *hub_pull(const char *cmd, const struct hub_ref *r, int quiet)
{
    struct pull pl = {0};
    pl.cmd = cmd;
    pl.quiet = quiet;
    pl.tty = !quiet && isatty(2);
    const char *ep = getenv("HF_ENDPOINT");
    snprintf(pl.endpoint, sizeof pl.endpoint, "%s", ep && *ep ? ep : "https://huggingface.co");
    size_t el = strlen(pl.endpoint);
    while (el && pl.endpoint[el - 1] == '/')
        pl.endpoint[--el] = 0;
    char *cache = hub_cache_dir();
    if (!cache) return NULL;
    char org[256];
    snprintf(org, sizeof org, "%s", r->repo);
    *strchr(org, '/') = 0;
    snprintf(pl.folder, sizeof pl.folder, "%s/models--%s--%s", cache, org,
             strchr(r->repo, '/') + 1);
    free(cache);
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        fprintf(stderr, "cellm %s: libcurl failed to initialise\n", cmd);
        return NULL;
    }
    char *out = NULL, *token = find_token();
    pl.curl = curl_easy_init();
    if (token) {
        size_t n = strlen(token) + 32;
        char *h = malloc(n);
        if (h) {
            snprintf(h, n, "Authorization: Bearer %s", token);
            pl.headers = curl_slist_append(NULL, h);
            pl.have_token = pl.headers != NULL;
            free(h);
        }
        free(token);
    }
    if (pl.curl) out = pull_repo(&pl, r);
    curl_slist_free_all(pl.headers);
    curl_easy_cleanup(pl.curl);
    curl_global_cleanup();
    return out;
}
#endif
