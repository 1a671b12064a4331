/*
 * pjrt.c: loading a PJRT plugin and driving it through its C function table.
 *
 * The args structs below are written from the documented x86-64 layout (offsets in the
 * comments and checked by static asserts), not from any third-party header. The plugin
 * is found by an explicit path, $CELLM_PJRT_PLUGIN, or next to an installed JAX:
 * jax_plugins/xla_cuda*\/xla_cuda_plugin.so under the site-packages (or dist-packages)
 * directories of $VIRTUAL_ENV, $CONDA_PREFIX, $PYTHONPATH entries, /opt/torch/.venv,
 * /usr/local, /usr and ~/.local. It is dlopen'ed where it is installed (its RPATH finds
 * the CUDA libraries beside it) and never dlclose'd: the plugin starts threads and
 * registers static state that does not survive unloading. The client is created with
 * preallocate=false, so it takes device memory as it needs it instead of 75% up front.
 * Compile options are never empty (an empty proto makes the plugin abort the process):
 * we send executable_build_options {num_replicas: 1, num_partitions: 1}.
 */
#include "exec/xla/pjrt.h"

#include <dlfcn.h>
#include <glob.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"

#define HDR                                                                                        \
    size_t struct_size;                                                                            \
    void *extension_start

struct a_error_destroy {
    HDR;
    void *error;
};
struct a_error_message {
    HDR;
    void *error;
    const char *message;
    size_t message_size;
};
struct a_error_code {
    HDR;
    void *error;
    int code;
};
struct a_plain {
    HDR;
};
struct a_event {
    HDR;
    void *event;
};
struct a_named_value {
    HDR;
    const char *name;
    size_t name_size;
    int type; /* 0 string, 1 int64, 2 int64 list, 3 float, 4 bool */
    union {
        const char *s;
        int64_t i;
        float f;
        bool b;
    } v;
    size_t value_size;
};
struct a_client_create {
    HDR;
    const struct a_named_value *create_options;
    size_t num_options;
    void *kv_get, *kv_get_arg, *kv_put, *kv_put_arg;
    void *client;
    void *kv_try_get, *kv_try_get_arg;
};
struct a_client {
    HDR;
    void *client;
};
struct a_client_str {
    HDR;
    void *client;
    const char *str;
    size_t size;
};
struct a_client_devices {
    HDR;
    void *client;
    void *const *devices;
    size_t num;
};
struct a_program {
    HDR;
    const char *code;
    size_t code_size;
    const char *format;
    size_t format_size;
};
struct a_compile {
    HDR;
    void *client;
    const struct a_program *program;
    const char *compile_options;
    size_t compile_options_size;
    void *executable;
};
struct a_from_host {
    HDR;
    void *client;
    const void *data;
    int type;
    const int64_t *dims;
    size_t num_dims;
    const int64_t *byte_strides;
    size_t num_byte_strides;
    int semantics;
    void *device, *memory, *device_layout;
    void *done_with_host_buffer;
    void *buffer;
};
struct a_obj {
    HDR;
    void *obj;
};
struct a_get_exe {
    HDR;
    void *loaded;
    void *executable;
};
struct a_num_outputs {
    HDR;
    void *executable;
    size_t num_outputs;
};
struct a_exec_options {
    HDR;
    void *send_callbacks, *recv_callbacks;
    size_t num_send_ops, num_recv_ops;
    int launch_id;
    const int64_t *non_donatable;
    size_t num_non_donatable;
    void *context;
    const char *call_location;
    size_t num_tasks;
    int *task_ids;
    int64_t *incarnation_ids;
    void *reserved; /* room for newer trailing fields; struct_size stays 112 */
};
struct a_execute {
    HDR;
    void *executable;
    struct a_exec_options *options;
    void *const *const *argument_lists;
    size_t num_devices, num_args;
    void **const *output_lists;
    void **device_complete_events;
    void *execute_device;
};
struct a_to_host {
    HDR;
    void *src;
    void *host_layout;
    void *dst;
    size_t dst_size;
    void *event;
};
struct a_dev_desc {
    HDR;
    void *device;
    void *description;
};
struct a_desc_kind {
    HDR;
    void *description;
    const char *kind;
    size_t kind_size;
};

#define OFF(t, f, o) _Static_assert(offsetof(struct t, f) == (o), #t "." #f)
OFF(pj_api, version.major, 32);
OFF(pj_api, fn, 40);
OFF(a_error_message, message_size, 32);
OFF(a_error_code, code, 24);
OFF(a_named_value, type, 32);
OFF(a_named_value, v, 40);
OFF(a_named_value, value_size, 48);
OFF(a_client_create, client, 64);
OFF(a_client_create, kv_try_get_arg, 80);
OFF(a_program, format_size, 40);
OFF(a_compile, executable, 48);
OFF(a_from_host, type, 32);
OFF(a_from_host, semantics, 72);
OFF(a_from_host, done_with_host_buffer, 104);
OFF(a_from_host, buffer, 112);
OFF(a_exec_options, launch_id, 48);
OFF(a_exec_options, incarnation_ids, 104);
OFF(a_execute, num_args, 48);
OFF(a_execute, execute_device, 72);
OFF(a_to_host, event, 48);
_Static_assert(sizeof(struct a_client_create) == 88, "PJRT_Client_Create_Args");
_Static_assert(sizeof(struct a_from_host) == 120, "PJRT_Client_BufferFromHostBuffer_Args");
_Static_assert(sizeof(struct a_execute) == 80, "PJRT_LoadedExecutable_Execute_Args");

typedef void *(*pj_fn)(void *args);
typedef void (*pj_void_fn)(void *args);

#define ARGS(type, var)                                                                            \
    struct type var;                                                                               \
    memset(&var, 0, sizeof var);                                                                   \
    var.struct_size = sizeof var

static void *call(const struct cellm_pjrt *pj, int slot, void *args)
{
    return ((pj_fn)pj->api->fn[slot])(args);
}

/* Converts (and destroys) a PJRT_Error into a cellm error. */
static enum cellm_status perr(const struct cellm_pjrt *pj, void *e, const char *what,
                              struct cellm_error *err)
{
    if (!e) return CELLM_OK;
    ARGS(a_error_message, m);
    m.error = e;
    ((pj_void_fn)pj->api->fn[PJ_ERROR_MESSAGE])(&m);
    ARGS(a_error_code, c);
    c.error = e;
    call(pj, PJ_ERROR_GETCODE, &c);
    int len = m.message && m.message_size < 400 ? (int)m.message_size : 400;
    enum cellm_status st = c.code == 8 ? CELLM_ERR_NOMEM : CELLM_ERR_DEVICE;
    cellm_errf(err, st, "xla: %s: %.*s", what, len, m.message ? m.message : "(no message)");
    ARGS(a_error_destroy, d);
    d.error = e;
    ((pj_void_fn)pj->api->fn[PJ_ERROR_DESTROY])(&d);
    return st;
}

/* Awaits and destroys an event; returns its error. */
static enum cellm_status await(const struct cellm_pjrt *pj, void *ev, const char *what,
                               struct cellm_error *err)
{
    if (!ev) return CELLM_OK;
    ARGS(a_event, a);
    a.event = ev;
    enum cellm_status st = perr(pj, call(pj, PJ_EVENT_AWAIT, &a), what, err);
    ARGS(a_event, d);
    d.event = ev;
    perr(pj, call(pj, PJ_EVENT_DESTROY, &d), what, NULL);
    return st;
}

/* ---- finding and opening -------------------------------------------------------------- */

static int first_match(const char *pattern, char *out, size_t n)
{
    glob_t g;
    int found = 0;
    if (glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        /* the last match in sorted order is the newest xla_cudaNN */
        snprintf(out, n, "%s", g.gl_pathv[g.gl_pathc - 1]);
        found = 1;
    }
    globfree(&g);
    return found;
}

static int search_prefix(const char *prefix, char *out, size_t n)
{
    static const char *const sub[] = {
        "/lib/python3*/site-packages/jax_plugins/xla_cuda*/xla_cuda_plugin.so",
        "/lib/python3*/dist-packages/jax_plugins/xla_cuda*/xla_cuda_plugin.so",
        "/local/lib/python3*/dist-packages/jax_plugins/xla_cuda*/xla_cuda_plugin.so",
        "/jax_plugins/xla_cuda*/xla_cuda_plugin.so", /* a site-packages dir itself */
    };
    char pat[1024];
    for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++) {
        snprintf(pat, sizeof pat, "%s%s", prefix, sub[i]);
        if (first_match(pat, out, n)) return 1;
    }
    return 0;
}

enum cellm_status cellm_pjrt_find(const char *explicit_path, const char *search, char *out,
                                  size_t n, struct cellm_error *err)
{
    if (explicit_path && *explicit_path) {
        snprintf(out, n, "%s", explicit_path);
        return CELLM_OK;
    }
    for (const char *pp = search ? search : ""; *pp;) {
        char dir[1024];
        size_t k = strcspn(pp, ":");
        if (k && k < sizeof dir) {
            memcpy(dir, pp, k);
            dir[k] = 0;
            if (search_prefix(dir, out, n)) return CELLM_OK;
        }
        pp += k + (pp[k] == ':');
    }
    const char *fixed[] = {"/opt/torch/.venv", "/usr/local", "/usr"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        if (search_prefix(fixed[i], out, n)) return CELLM_OK;
    return cellm_errf(
        err, CELLM_ERR_UNSUPPORTED,
        "--device xla needs a PJRT plugin and none was found (looked for "
        "jax_plugins/xla_cuda*/xla_cuda_plugin.so in the Python site-packages of $VIRTUAL_ENV, "
        "$CONDA_PREFIX, $PYTHONPATH, ~/.local, /opt/torch/.venv, /usr/local, /usr); point at one "
        "with --pjrt-plugin PATH or CELLM_PJRT_PLUGIN=PATH");
}

static const unsigned char compile_opts[] = {0x1A, 0x04, 0x20, 0x01, 0x28, 0x01};

static enum cellm_status create_client(struct cellm_pjrt *pj, struct cellm_error *err)
{
    struct a_named_value opt;
    memset(&opt, 0, sizeof opt);
    opt.struct_size = sizeof opt;
    opt.name = "preallocate";
    opt.name_size = strlen(opt.name);
    opt.type = 4;
    opt.v.b = false;
    opt.value_size = 1;
    ARGS(a_client_create, a);
    a.create_options = &opt;
    a.num_options = 1;
    void *e = call(pj, PJ_CLIENT_CREATE, &a);
    if (e) {
        /* a plugin that does not know the option (not the CUDA one): try without it */
        perr(pj, e, "creating the client", NULL);
        ARGS(a_client_create, b);
        CELLM_TRY(perr(pj, call(pj, PJ_CLIENT_CREATE, &b), "creating the client", err));
        a.client = b.client;
    }
    pj->client = a.client;
    return CELLM_OK;
}

enum cellm_status cellm_pjrt_open(const char *path, struct cellm_pjrt *pj, struct cellm_error *err)
{
    memset(pj, 0, sizeof *pj);
    snprintf(pj->path, sizeof pj->path, "%s", path);
    pj->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!pj->dl)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device xla: cannot load the PJRT plugin %s: %s (give another with "
                          "--pjrt-plugin PATH or CELLM_PJRT_PLUGIN)",
                          path, dlerror());
    void *sym = dlsym(pj->dl, "GetPjrtApi");
    if (!sym)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device xla: %s is not a PJRT plugin (no GetPjrtApi symbol)", path);
    const struct pj_api *(*get)(void);
    memcpy(&get, &sym, sizeof get);
    pj->api = get();
    if (!pj->api)
        return cellm_errf(err, CELLM_ERR_DEVICE, "--device xla: %s: GetPjrtApi returned NULL",
                          path);
    pj->major = pj->api->version.major;
    pj->minor = pj->api->version.minor;
    if (pj->major != 0 || pj->minor < 94)
        return cellm_errf(
            err, CELLM_ERR_UNSUPPORTED,
            "--device xla: %s implements PJRT C API %d.%d; cellm needs 0.94 or a later 0.x", path,
            pj->major, pj->minor);
    if (pj->api->struct_size < 40 + 8 * (size_t)PJ_N_SLOTS)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device xla: %s: its function table has only %zu bytes", path,
                          pj->api->struct_size);
    for (int s = 0; s < PJ_N_SLOTS; s++)
        if (s <= PJ_BUFFER_TO_HOST && !pj->api->fn[s] &&
            (s == PJ_ERROR_DESTROY || s == PJ_ERROR_MESSAGE || s == PJ_CLIENT_CREATE ||
             s == PJ_CLIENT_COMPILE || s == PJ_LOADED_EXECUTABLE_EXECUTE))
            return cellm_errf(err, CELLM_ERR_UNSUPPORTED, "--device xla: %s lacks PJRT function %d",
                              path, s);
    ARGS(a_plain, init);
    CELLM_TRY(perr(pj, call(pj, PJ_PLUGIN_INITIALIZE, &init), "initializing the plugin", err));
    CELLM_TRY(create_client(pj, err));
    ARGS(a_client_str, pn);
    pn.client = pj->client;
    if (!perr(pj, call(pj, PJ_CLIENT_PLATFORM_NAME, &pn), "platform name", NULL) && pn.str)
        snprintf(pj->platform, sizeof pj->platform, "%.*s", (int)pn.size, pn.str);
    ARGS(a_client_devices, dv);
    dv.client = pj->client;
    CELLM_TRY(perr(pj, call(pj, PJ_CLIENT_ADDRESSABLE_DEVICES, &dv), "listing devices", err));
    if (dv.num < 1)
        return cellm_errf(err, CELLM_ERR_DEVICE, "--device xla: the %s plugin sees no device",
                          pj->platform);
    pj->device = dv.devices[0];
    ARGS(a_dev_desc, dd);
    dd.device = pj->device;
    if (!perr(pj, call(pj, PJ_DEVICE_GET_DESCRIPTION, &dd), "device", NULL) && dd.description) {
        ARGS(a_desc_kind, dk);
        dk.description = dd.description;
        if (!perr(pj, call(pj, PJ_DEVICE_DESCRIPTION_KIND, &dk), "device kind", NULL) && dk.kind)
            snprintf(pj->kind, sizeof pj->kind, "%.*s", (int)dk.kind_size, dk.kind);
    }
    return CELLM_OK;
}

void cellm_pjrt_close(struct cellm_pjrt *pj)
{
    if (pj->client) {
        ARGS(a_client, d);
        d.client = pj->client;
        perr(pj, call(pj, PJ_CLIENT_DESTROY, &d), "destroying the client", NULL);
    }
    pj->client = NULL;
}

/* ---- compile, buffers, execute --------------------------------------------------------- */

enum cellm_status cellm_pjrt_compile(struct cellm_pjrt *pj, const char *text, size_t len,
                                     void **exe, size_t *n_out, struct cellm_error *err)
{
    *exe = NULL;
    ARGS(a_program, prog);
    prog.code = text;
    prog.code_size = len;
    prog.format = "mlir";
    prog.format_size = 4;
    ARGS(a_compile, a);
    a.client = pj->client;
    a.program = &prog;
    a.compile_options = (const char *)compile_opts;
    a.compile_options_size = sizeof compile_opts;
    CELLM_TRY(perr(pj, call(pj, PJ_CLIENT_COMPILE, &a), "compiling the model", err));
    ARGS(a_get_exe, g);
    g.loaded = a.executable;
    enum cellm_status st =
        perr(pj, call(pj, PJ_LOADED_EXECUTABLE_GET_EXECUTABLE, &g), "executable", err);
    if (!st) {
        ARGS(a_num_outputs, no);
        no.executable = g.executable;
        st = perr(pj, call(pj, PJ_EXECUTABLE_NUM_OUTPUTS, &no), "executable outputs", err);
        *n_out = no.num_outputs;
        ARGS(a_obj, d);
        d.obj = g.executable;
        perr(pj, call(pj, PJ_EXECUTABLE_DESTROY, &d), "executable", NULL);
    }
    if (st) {
        cellm_pjrt_exe_free(pj, a.executable);
        return st;
    }
    *exe = a.executable;
    return CELLM_OK;
}

void cellm_pjrt_exe_free(struct cellm_pjrt *pj, void *exe)
{
    if (!exe) return;
    ARGS(a_obj, d);
    d.obj = exe;
    perr(pj, call(pj, PJ_LOADED_EXECUTABLE_DESTROY, &d), "executable", NULL);
}

enum cellm_status cellm_pjrt_upload(struct cellm_pjrt *pj, const void *data, int type,
                                    const int64_t *dims, int rank, void **buf,
                                    struct cellm_error *err)
{
    *buf = NULL;
    ARGS(a_from_host, a);
    a.client = pj->client;
    a.data = data;
    a.type = type;
    a.dims = dims;
    a.num_dims = (size_t)rank;
    a.semantics = 0; /* copied before the call returns */
    a.device = pj->device;
    CELLM_TRY(perr(pj, call(pj, PJ_CLIENT_BUFFER_FROM_HOST, &a), "uploading to the device", err));
    enum cellm_status st = await(pj, a.done_with_host_buffer, "uploading to the device", err);
    if (st) {
        cellm_pjrt_buffer_free(pj, a.buffer);
        return st;
    }
    *buf = a.buffer;
    return CELLM_OK;
}

enum cellm_status cellm_pjrt_download(struct cellm_pjrt *pj, void *buf, void *dst, size_t size,
                                      struct cellm_error *err)
{
    ARGS(a_to_host, q);
    q.src = buf;
    CELLM_TRY(perr(pj, call(pj, PJ_BUFFER_TO_HOST, &q), "reading a result", err));
    if (q.dst_size != size)
        return cellm_errf(err, CELLM_ERR_DEVICE, "xla: a result has %zu bytes, expected %zu",
                          q.dst_size, size);
    ARGS(a_to_host, a);
    a.src = buf;
    a.dst = dst;
    a.dst_size = size;
    CELLM_TRY(perr(pj, call(pj, PJ_BUFFER_TO_HOST, &a), "reading a result", err));
    return await(pj, a.event, "reading a result", err);
}

void cellm_pjrt_buffer_free(struct cellm_pjrt *pj, void *buf)
{
    if (!buf) return;
    ARGS(a_obj, d);
    d.obj = buf;
    perr(pj, call(pj, PJ_BUFFER_DESTROY, &d), "buffer", NULL);
}

enum cellm_status cellm_pjrt_execute(struct cellm_pjrt *pj, void *exe, void *const *args,
                                     size_t n_args, void **out, size_t n_out,
                                     struct cellm_error *err)
{
    struct a_exec_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = offsetof(struct a_exec_options, reserved);
    ARGS(a_execute, a);
    void *const *lists[1] = {args};
    void **outs[1] = {out};
    void *done[1] = {NULL};
    for (size_t i = 0; i < n_out; i++)
        out[i] = NULL;
    a.executable = exe;
    a.options = &o;
    a.argument_lists = lists;
    a.num_devices = 1;
    a.num_args = n_args;
    a.output_lists = outs;
    a.device_complete_events = done;
    CELLM_TRY(perr(pj, call(pj, PJ_LOADED_EXECUTABLE_EXECUTE, &a), "running the model", err));
    return await(pj, done[0], "running the model", err);
}
