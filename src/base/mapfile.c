/*
 * mapfile.c: mmap of checkpoint files, whole-file reads of small ones.
 */
#include "mapfile.h"

#include <errno.h>
#include <fcntl.h>
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
    int fd = open(path, O_RDONLY | O_CLOEXEC);
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

enum cellm_status cellm_read_file(const char *path, char **out, size_t *len,
                                  struct cellm_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return cellm_errf(err, errno == ENOENT ? CELLM_ERR_NOT_FOUND : CELLM_ERR_IO,
                          "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = cellm_malloc(cap);
    if (!buf) {
        fclose(f);
        return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = cellm_realloc(buf, cap * 2);
            if (!nb) {
                cellm_free(buf);
                fclose(f);
                return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        cellm_free(buf);
        return cellm_errf(err, CELLM_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return CELLM_OK;
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
