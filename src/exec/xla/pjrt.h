/*
 * pjrt.h: the part of the PJRT C API cellm uses, declared from the documented ABI
 * (docs/reference/pjrt.md: x86-64 LP64 byte offsets of PJRT_Api and of each args
 * struct, for API 0.94 and later; checked below with static asserts), plus a small
 * wrapper: a loaded plugin with one client on its first addressable device.
 *
 * Every args struct starts with struct_size and an extension pointer; we zero the
 * whole struct and pass sizeof (a caller struct at least as large as the plugin's is
 * accepted). Every PJRT_Error is turned into a cellm error carrying the plugin's message
 * and then destroyed; every event is awaited and destroyed.
 */
#ifndef CELLM_EXEC_XLA_PJRT_H
#define CELLM_EXEC_XLA_PJRT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cellm.h"

/* Slots of PJRT_Api's function table (pointer i at byte 40 + 8 i). */
enum {
    PJ_ERROR_DESTROY = 0,
    PJ_ERROR_MESSAGE = 1,
    PJ_ERROR_GETCODE = 2,
    PJ_PLUGIN_INITIALIZE = 3,
    PJ_EVENT_DESTROY = 5,
    PJ_EVENT_AWAIT = 8,
    PJ_CLIENT_CREATE = 10,
    PJ_CLIENT_DESTROY = 11,
    PJ_CLIENT_PLATFORM_NAME = 12,
    PJ_CLIENT_ADDRESSABLE_DEVICES = 16,
    PJ_CLIENT_COMPILE = 20,
    PJ_CLIENT_BUFFER_FROM_HOST = 22,
    PJ_DEVICE_DESCRIPTION_KIND = 26,
    PJ_DEVICE_GET_DESCRIPTION = 29,
    PJ_EXECUTABLE_DESTROY = 40,
    PJ_EXECUTABLE_NUM_OUTPUTS = 44,
    PJ_LOADED_EXECUTABLE_DESTROY = 50,
    PJ_LOADED_EXECUTABLE_GET_EXECUTABLE = 51,
    PJ_LOADED_EXECUTABLE_EXECUTE = 55,
    PJ_BUFFER_DESTROY = 58,
    PJ_BUFFER_TO_HOST = 70,
    PJ_N_SLOTS = 71,
};

/* PJRT_Buffer_Type values. */
enum { PJ_S32 = 4, PJ_U8 = 6, PJ_U32 = 8, PJ_F16 = 10, PJ_F32 = 11, PJ_BF16 = 13 };

struct pj_api {
    size_t struct_size;
    void *extension_start;
    struct {
        size_t struct_size;
        void *extension_start;
        int major, minor;
    } version;
    void *fn[]; /* function table */
};

/* The loaded plugin, its client and device. Lives in the executor's model state. */
struct cellm_pjrt {
    void *dl; /* dlopen handle (never closed: see pjrt.c) */
    const struct pj_api *api;
    void *client; /* PJRT_Client* */
    void *device; /* PJRT_Device* */
    char path[1024];
    char platform[32];
    char kind[96];
    int major, minor;
};

/* Finds the plugin: explicit path, else a JAX CUDA plugin
 * (jax_plugins/xla_cuda.../xla_cuda_plugin.so) in the Python site-packages under each prefix of
 * search (':'-separated: virtualenvs, conda prefixes, site-packages directories; NULL =
 * none), then under the fixed defaults /opt/torch/.venv, /usr/local and /usr. The library
 * reads no environment variable: the CLI turns $CELLM_PJRT_PLUGIN, $VIRTUAL_ENV,
 * $CONDA_PREFIX, $PYTHONPATH and ~/.local into explicit_path and search. The fixed
 * defaults stay here because they are where the system's packages install the plugin,
 * the same for every caller. CELLM_ERR_UNSUPPORTED with a how-to when none is found. */
enum cellm_status cellm_pjrt_find(const char *explicit_path, const char *search, char *out,
                                  size_t n, struct cellm_error *err);
enum cellm_status cellm_pjrt_open(const char *path, struct cellm_pjrt *pj, struct cellm_error *err);
void cellm_pjrt_close(struct cellm_pjrt *pj);

/* Compiles StableHLO text; *exe is a PJRT_LoadedExecutable*, *n_out its result count. */
enum cellm_status cellm_pjrt_compile(struct cellm_pjrt *pj, const char *text, size_t len,
                                     void **exe, size_t *n_out, struct cellm_error *err);
void cellm_pjrt_exe_free(struct cellm_pjrt *pj, void *exe);

/* Uploads a dense row-major host array (copied before returning). */
enum cellm_status cellm_pjrt_upload(struct cellm_pjrt *pj, const void *data, int type,
                                    const int64_t *dims, int rank, void **buf,
                                    struct cellm_error *err);
/* Copies a whole buffer to host memory of `size` bytes (must match). */
enum cellm_status cellm_pjrt_download(struct cellm_pjrt *pj, void *buf, void *dst, size_t size,
                                      struct cellm_error *err);
void cellm_pjrt_buffer_free(struct cellm_pjrt *pj, void *buf);

/* Runs exe on one device with n_args inputs; writes n_out new buffers into out. */
enum cellm_status cellm_pjrt_execute(struct cellm_pjrt *pj, void *exe, void *const *args,
                                     size_t n_args, void **out, size_t n_out,
                                     struct cellm_error *err);

#endif
