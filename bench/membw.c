/*
 * membw.c: a read-bandwidth probe. Sums a buffer much larger than the caches with N
 * threads (the way decode streams weights) and prints GB/s, the best of several passes.
 *   membw THREADS MIB            anonymous memory (huge pages where the kernel gives them)
 *   membw THREADS MIB FILE       the first MIB of FILE, mapped read-only as cellm maps
 *                                checkpoints (page-cache pages, usually 4 KiB mappings)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct part {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
};

static void *reader(void *arg)
{
    struct part *pt = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= pt->n; i += 4) {
        s0 += pt->p[i];
        s1 += pt->p[i + 1];
        s2 += pt->p[i + 2];
        s3 += pt->p[i + 3];
    }
    pt->sum = s0 + s1 + s2 + s3;
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    size_t bytes = (size_t)(argc > 2 ? atof(argv[2]) : 1024) << 20;
    if (threads < 1 || threads > 256) threads = 1;
    const char *file = argc > 3 ? argv[3] : NULL;
    uint64_t *buf;
    if (file) {
        int fd = open(file, O_RDONLY);
        off_t sz = fd < 0 ? 0 : lseek(fd, 0, SEEK_END);
        if (sz < 1 << 20) return 1;
        if ((size_t)sz < bytes) bytes = (size_t)sz & ~(size_t)31;
        buf = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
        if (buf == MAP_FAILED) return 1;
        madvise(buf, bytes, MADV_HUGEPAGE);
        close(fd);
    } else {
        buf = malloc(bytes);
        if (!buf) return 1;
        memset(buf, 1, bytes);
    }
    size_t n = bytes / 8;
    double best = 0;
    uint64_t total = 0;
    for (int pass = 0; pass < 5; pass++) {
        pthread_t th[256];
        struct part pt[256];
        double t0 = now();
        for (int t = 0; t < threads; t++) {
            pt[t].p = buf + n * t / threads;
            pt[t].n = n * (t + 1) / threads - n * t / threads;
            pthread_create(&th[t], NULL, reader, &pt[t]);
        }
        for (int t = 0; t < threads; t++) {
            pthread_join(th[t], NULL);
            total += pt[t].sum;
        }
        double gbs = bytes / (now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    printf("read bandwidth: %.2f GB/s (%d threads, %zu MiB %s, checksum %llu)\n", best, threads,
           bytes >> 20, file ? "of a mapped file" : "anonymous",
           (unsigned long long)(total & 0xff));
    if (file)
        munmap(buf, bytes);
    else
        free(buf);
    return 0;
}
