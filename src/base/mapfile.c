/*
 * mapfile.c: mmap of checkpoint files, whole-file reads of small ones.
 */
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"

enum cellm_status cellm_mapfile_open(const char *path, struct cellm_mapfile *out,
                                     struct cellm_error *err)
{
    out->data = NULL;
    out->size = 0;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever
     * (it changes nothing for a regular file, the only kind accepted below) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return cellm_errf(err, errno == ENOENT ? CELLM_ERR_NOT_FOUND : CELLM_ERR_IO,
                          "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return cellm_errf(err, CELLM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cellm_errf(err, CELLM_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return cellm_errf(err, CELLM_ERR_IO, "%s: cannot map %lld bytes: %s", path,
                              (long long)st.st_size, strerror(e));
        }
#ifdef MADV_HUGEPAGE
        /* Decode streams every weight once per token: where the page cache holds large
         * folios, huge mappings spare the TLB. Advice only; failure changes nothing. */
        (void)madvise(p, (size_t)st.st_size, MADV_HUGEPAGE);
#endif
        out->data = p;
        out->size = (size_t)st.st_size;
    }
    close(fd);
    return CELLM_OK;
}

void cellm_mapfile_close(struct cellm_mapfile *m)
{
    if (m && m->data) munmap((void *)m->data, m->size);
    if (m) {
        m->data = NULL;
        m->size = 0;
    }
}

enum cellm_status cellm_read_file_max(const char *path, size_t max, char **out, size_t *len,
                                      struct cellm_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* see cellm_mapfile_open */
    if (fd < 0)
        return cellm_errf(err, errno == ENOENT ? CELLM_ERR_NOT_FOUND : CELLM_ERR_IO,
                          "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return cellm_errf(err, CELLM_ERR_IO,
                          "%s: not a regular file (devices, FIFOs and sockets are refused)", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max) {
        close(fd);
        return cellm_errf(err, CELLM_ERR_RANGE, "%s: %lld bytes, beyond the limit of %zu bytes",
                          path, (long long)st.st_size, max);
    }
    /* the size at open; a file that grows meanwhile is read up to the limit only */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = cellm_malloc(cap);
    if (!buf) {
        close(fd);
        return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, cap);
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max) {
                cellm_free(buf);
                close(fd);
                return cellm_errf(err, CELLM_ERR_RANGE, "%s: grew beyond the limit of %zu bytes",
                                  path, max);
            }
            size_t nc = cap * 2 > max + 1 ? max + 2 : cap * 2;
            char *nb = cellm_realloc(buf, nc);
            if (!nb) {
                cellm_free(buf);
                close(fd);
                return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap = nc;
        }
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            int e = errno;
            cellm_free(buf);
            close(fd);
            return cellm_errf(err, CELLM_ERR_IO, "%s: read error: %s", path, strerror(e));
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return CELLM_OK;
}

enum cellm_status cellm_read_file(const char *path, char **out, size_t *len,
                                  struct cellm_error *err)
{
    return cellm_read_file_max(path, CELLM_READ_FILE_MAX, out, len, err);
}

int cellm_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *cellm_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    int slash = a > 0 && dir[a - 1] != '/';
    char *p = cellm_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (slash) p[a++] = '/';
    memcpy(p + a, name, b + 1);
    return p;
}
